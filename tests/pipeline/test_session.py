"""`PipelineSession`: the notebook holds the workspace lock only inside a `with` block, whatever happens."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from launch.errors import LaunchError
from launch.files import PIPELINES_DIR
from launch.pipeline import PipelineState, StepRecord
from launch.session import PipelineSession
from tests.conftest import REPO_ROOT
from tests.pipeline.lock_holder import lock_is_free, workspace_locked_elsewhere

SMOKE = REPO_ROOT / "configs" / "pipeline" / "smoke.yaml"


@pytest.fixture
def session(tmp_path: Path) -> PipelineSession:
    return PipelineSession(SMOKE, workspace=tmp_path / "ws", code_dir=REPO_ROOT, announce=lambda _m: None)


def test_the_lock_is_held_inside_the_block_only(session: PipelineSession) -> None:
    workspace = session.workspace
    with pytest.raises(LaunchError, match="has no backend yet"):
        _ = session.backend
    with session as pipeline:
        assert pipeline.validate() == {"backend": "local"}
        assert session.locked and not lock_is_free(workspace)
    assert not session.locked and lock_is_free(workspace)
    assert session.backend.name == "local"  # kept for read-only use between blocks
    with session as again:
        assert again is not pipeline and again.report is pipeline.report is session.report


def test_an_exception_or_an_interrupt_in_the_block_releases_the_lock(session: PipelineSession) -> None:
    workspace = session.workspace
    with pytest.raises(RuntimeError, match="boom"), session as pipeline:
        pipeline.validate()
        raise RuntimeError("boom")
    assert lock_is_free(workspace)
    # The kernel's interrupt button sends SIGINT: a KeyboardInterrupt inside the block. (Python's
    # own handler, as in a kernel: a test run started in the background has SIGINT ignored.)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), session:
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not session.locked and lock_is_free(workspace)


def test_blocks_do_not_nest_and_another_run_keeps_the_session_out(session: PipelineSession) -> None:
    with session:
        with pytest.raises(LaunchError, match="already in use"), session:
            pass
        assert session.locked and not lock_is_free(session.workspace)
    assert lock_is_free(session.workspace)
    with workspace_locked_elsewhere(session.workspace):
        with pytest.raises(LaunchError, match="another pipeline run is using this workspace"), session:
            pass
        assert not session.locked
    assert lock_is_free(session.workspace)


def test_results_read_the_state_file_afresh(session: PipelineSession) -> None:
    assert session.results() == {}
    # What a terminal run writes between two cells.
    state = PipelineState(session.workspace / PIPELINES_DIR / f"{session.config.name}.json")
    state.put("environment", StepRecord("fp", "completed", {"name": "env", "version": "2"}))
    state.put("dry_run", StepRecord("fp", "failed", {"job_id": "x"}))
    assert session.results() == {"environment": {"name": "env", "version": "2"}}
