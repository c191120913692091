"""A second process that holds a local workspace's lock, for the concurrency tests."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO_ROOT


@contextmanager
def workspace_locked_elsewhere(workspace: Path) -> Iterator[None]:
    """Hold `workspace`'s lock in a child process for the duration of the `with` block.

    Args:
        workspace: The local workspace folder.
    """
    holder = textwrap.dedent(
        f"""
        import sys
        from launch.local import LocalWorkspace
        with LocalWorkspace({str(workspace)!r}).locked():
            print("locked", flush=True)
            sys.stdin.readline()
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "locked"
        yield
    finally:
        process.communicate("\n")
