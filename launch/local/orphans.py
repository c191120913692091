"""Orphaned jobs of the emulated workspace: who runs a job, and whether that process is gone.

Jobs run in threads of the process that submitted them (the emulator has no service to outlive
it). Each job record names its executor (host, pid, process start time); when a process is killed
outright (SIGKILL, a crash), the next client on the workspace tells from that record that the
executor is gone, and stops what is left of the job's process group (its watchdog normally did it
already, `launch/local/process_group.py`) before the job is recorded Failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Any


def _start_ticks(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), or None where /proc is absent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def executor_record() -> dict[str, Any]:
    """Who runs the jobs this process submits: host, pid and start time (a reused pid is told apart)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def executor_gone(executor: dict[str, Any]) -> bool:
    """True when the process that ran a job no longer exists (False when it may, or on another host)."""
    if executor.get("host") != socket.gethostname():
        return False
    pid = int(executor["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = executor.get("started")
    return started is not None and _start_ticks(pid) not in (None, started)


def stop_orphaned_group(pgid: int, job_name: str) -> None:
    """SIGKILL what is left of job `job_name`'s process group (its processes carry its run id)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    marker = f"AZUREML_RUN_ID={job_name}".encode()
    for stat in proc.glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if marker in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            return
