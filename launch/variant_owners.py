"""Who trains a final-training variant: the owner record (host, pid, the pid's start time).

A variant folder is trained by one process at a time; a second process may take over a variant
only when its owner is gone (`launch/variants.py`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from launch.variants import VariantRecord


def utc_now() -> str:
    """Current time as an ISO-8601 UTC timestamp."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/<pid>/stat), or None off Linux / when gone.

    Stored with the pid so that a recycled pid is not taken for the original owner.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def current_owner() -> dict[str, Any]:
    """The owner record of this process: host, pid and the pid's start time."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "started": _process_start_time(pid), "at": utc_now()}


def owner_is_alive(owner: Mapping[str, Any] | None) -> bool:
    """Whether the process of an owner record still runs.

    An owner on another host cannot be checked from here and counts as alive: taking over a
    variant that a live process on another machine is training would train two runs into one
    folder, while a dead remote owner only needs `run.mode: force_new` or a later retry.
    """
    if not owner or not isinstance(owner.get("pid"), int):
        return False
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    started = owner.get("started")
    return started is None or _process_start_time(pid) == started


def owned_by_another(record: VariantRecord) -> bool:
    """Whether a live process other than this one owns the variant."""
    owner = record.metadata.get("owner")
    if not isinstance(owner, Mapping) or not owner_is_alive(owner):
        return False
    return not (owner.get("host") == socket.gethostname() and owner.get("pid") == os.getpid())
