"""Process-table helpers of the pipeline and emulator tests (Linux /proc)."""

from __future__ import annotations

from pathlib import Path


def live_in_group(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group `pgid`."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(stat.parent.name))
    return live
