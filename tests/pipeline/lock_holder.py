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


def lock_is_free(workspace: Path) -> bool:
    """Whether the lock of `workspace` can be taken right now (it is released at once).

    The lock is an flock on its own file handle, so a holder in this process (a `PipelineSession`)
    refuses it as one in another process (a notebook kernel) does.

    Args:
        workspace: The local workspace folder.
    """
    from launch.errors import LaunchError
    from launch.local.workspace import LocalWorkspace

    try:
        with LocalWorkspace(workspace).locked(0):
            return True
    except LaunchError:
        return False
