"""The process group of a command job: stop it, and the watchdog that ends it with its executor.

All processes of a job share one process group (its own session). Stopping the job stops the
group (SIGTERM, then SIGKILL after `STOP_GRACE_S`). A watchdog started in that group holds the read
end of a pipe whose write end only the executing process holds: when that process dies without
stopping the job (a SIGKILLed `ner-pipeline`; the emulator has no service to outlive it), the
pipe's end makes the watchdog stop the group, as the end of a node ends its job on Azure ML. When
the job ends, the same pipe ends what the job left behind (background processes), as a finished
node does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

#: Seconds a stopped job gets between SIGTERM and SIGKILL.
STOP_GRACE_S = 10.0

#: The watchdog of a job's process group (see the module docstring): ignores the signals that stop
#: the group, waits for the end of its pipe (stdin), then stops every other process of its group.
WATCHDOG = """
import os, signal, sys, time
for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, signal.SIG_IGN)
sys.stdin.buffer.read()
group, me = os.getpgrp(), os.getpid()
def others():
    if not os.path.isdir("/proc"):
        return True
    found = False
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me:
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found = found or (int(fields[2]) == group and fields[0] != "Z")
    return found
if others():
    os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + float(sys.argv[1])
    while others() and time.monotonic() < deadline:
        time.sleep(0.1)
    if others():
        os.killpg(group, signal.SIGKILL)
"""


def stop_group(pgid: int, processes: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the job's process group, SIGKILL whatever is left after `grace_s`."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for process in processes:
        process.wait()


def start_watchdog(pgid: int, job_name: str) -> tuple[subprocess.Popen, int]:
    """Start the watchdog of process group `pgid`; returns it and the pipe end that keeps it waiting.

    The write end is not inheritable (`os.pipe`), so only this process holds it: it closes when
    this process closes it or dies, however it dies.
    """
    read_end, write_end = os.pipe()
    try:
        watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WATCHDOG, str(STOP_GRACE_S)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"AZUREML_RUN_ID": job_name},
            process_group=pgid,
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return watchdog, write_end


def release_watchdog(watchdog: subprocess.Popen | None, write_end: int | None) -> None:
    """End the job's group: the watchdog stops what the job left running, then exits (reaped aside)."""
    if write_end is not None:
        os.close(write_end)
    if watchdog is not None:
        threading.Thread(target=watchdog.wait, daemon=True).start()
