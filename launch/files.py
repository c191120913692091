"""Files every part of the launcher writes and reads the same way: atomic JSON, JSON with clear
errors, a writable folder, and the workspace lock.

A neutral module: both backends (`launch.azure`, `launch.local`), the pipeline and the
final-training variant store import it; it imports no backend and no pipeline module.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from launch.errors import LaunchError

#: The lock file a running pipeline holds, in the workspace folder.
WORKSPACE_LOCK_FILE = "workspace.lock"
#: Folder of the pipelines' state, selection and summary files, in the workspace folder (both backends).
PIPELINES_DIR = "pipelines"
#: Who holds the lock (pid, host, since when), next to it; read by a run that finds it busy.
WORKSPACE_LOCK_HOLDER_FILE = "workspace.lock.holder"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write `payload` as JSON next to `path` and move it into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path, *, what: str, fix: str) -> Any:
    """The parsed content of a JSON file the launcher wrote (state, metadata, records).

    Args:
        path: The file.
        what: What the file is, for the message (e.g. "the pipeline state file").
        fix: What the user should do when it cannot be read.

    Raises:
        LaunchError: The file cannot be read or is not valid JSON, naming it and the fix.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LaunchError(f"{what} cannot be read ({exc})", path=path, fix=fix) from None
    except json.JSONDecodeError as exc:
        raise LaunchError(f"{what} is corrupt ({exc})", path=path, fix=fix) from None


def ensure_writable_folder(root: Path, *, field: str = "workspace") -> None:
    """Create `root` if needed and prove it is writable.

    Raises:
        LaunchError: The folder cannot be created or written, naming it and the fix.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise LaunchError(
            f"the local workspace folder is not writable ({exc.strerror or exc})",
            path=root,
            field=field,
            fix="point `workspace` in the pipeline config (or --workspace) at a folder you can write, "
            "or fix its permissions",
        ) from exc
    if not os.access(root, os.W_OK):
        raise LaunchError(
            "the local workspace folder is not writable",
            path=root,
            field=field,
            fix="point `workspace` at a folder you can write, or fix its permissions",
        )


@contextmanager
def workspace_lock(root: Path, timeout_s: float = 0.0, *, announce: Any = print) -> Iterator[None]:
    """Hold the lock of the workspace folder `root` so two pipeline runs never interleave their writes.

    A context manager: the lock is released however the block ends (a notebook cell that raises
    cannot leave it held).

    Args:
        root: Workspace folder (created when missing; must be writable).
        timeout_s: How long to wait for another run to finish; 0 refuses at once.
        announce: Called with a message when the lock is busy and we wait.

    Raises:
        LaunchError: The lock is still held by another run after `timeout_s`.
    """
    ensure_writable_folder(root)
    lock_path = root / WORKSPACE_LOCK_FILE
    holder_file = root / WORKSPACE_LOCK_HOLDER_FILE
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = holder_file.read_text(encoding="utf-8").strip() if holder_file.exists() else "unknown"
        if timeout_s <= 0:
            raise LaunchError(
                f"another pipeline run is using this workspace ({holder})",
                path=lock_path,
                fix="wait for it to finish, or set `lock_timeout_s: <seconds>` in the pipeline config "
                "to wait for it",
            ) from None
        announce(f"waiting up to {timeout_s:.0f}s for the workspace lock held by {holder} ...")
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise LaunchError(
                f"another pipeline run still holds the workspace lock after {timeout_s:.0f}s ({holder})",
                path=lock_path,
                fix="wait for it to finish and run again",
            ) from None
    try:
        holder_file.write_text(
            f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n",
            encoding="utf-8",
        )
        yield
    finally:
        holder_file.unlink(missing_ok=True)
        lock.release()
