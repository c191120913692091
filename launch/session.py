"""The notebook's handle on one pipeline: the workspace lock is held only inside a `with` block.

A notebook cell that runs a step reads::

    session = PipelineSession("configs/pipeline/smoke.yaml")
    with session as pipeline:  # takes the workspace lock (or refuses, as `ner-pipeline run` does)
        pipeline.sweep()
    # the lock is free again, whatever happened in the block

Leaving the block for any reason, an exception or an interrupted kernel (`KeyboardInterrupt`)
included, cancels the jobs still running on the emulated workspace (as `ner-pipeline run` does on
Ctrl-C) and releases the lock, so a notebook never keeps a terminal run out by mistake. Every block
reads the state file afresh: a `ner-pipeline run` started in a terminal between two cells is seen.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from launch.backends import make_backend
from launch.errors import LaunchError
from launch.files import PIPELINES_DIR, workspace_lock
from launch.pipeline import Announce, Pipeline, PipelineReport
from launch.pipeline_config import PipelineConfig, load_pipeline_config
from launch.pipeline_state import PipelineState


class PipelineSession:
    """One pipeline config on one backend, entered once per notebook cell.

    Args:
        config_path: Pipeline config (`configs/pipeline/<preset>.yaml`).
        backend: `local` (the emulated workspace) or `azure`.
        workspace: Overrides the config's `workspace` folder.
        code_dir: Repository root (git commit, job code snapshot); default: the current directory.
        force: Steps to recompute even when their inputs are unchanged.
        announce: Where progress lines go.

    Attributes:
        config: The loaded pipeline config.
        workspace: The workspace folder (lock, state files, and on `local` the emulated workspace).
        report: What the steps run in this session did (shared by every block, so the summary
            lists the steps of all cells).
    """

    def __init__(
        self,
        config_path: str | Path,
        *,
        backend: str = "local",
        workspace: str | Path | None = None,
        code_dir: str | Path | None = None,
        force: tuple[str, ...] = (),
        announce: Announce = print,
    ) -> None:
        config = load_pipeline_config(config_path)
        if workspace is not None:
            config = replace(config, workspace=Path(workspace))
        self.config: PipelineConfig = config
        self.backend_name = backend
        self.code_dir = Path(code_dir or Path.cwd()).absolute()
        self.force = tuple(force)
        self.announce = announce
        self.workspace = Path(config.workspace)
        self.report = PipelineReport()
        self._backend: Any = None
        self._held: ExitStack | None = None

    # --- the lock as a context -----------------------------------------------------------------
    def __enter__(self) -> Pipeline:
        """Take the workspace lock and return a `Pipeline` over the current state file.

        Raises:
            LaunchError: Another run holds the lock (after the config's `lock_timeout_s`), or this
                session is already entered (blocks do not nest).
        """
        if self._held is not None:
            raise LaunchError(
                "this pipeline session is already in use (a `with session` block is open)",
                fix="run the step inside the open block instead of opening a second one",
            )
        held = ExitStack()
        held.enter_context(workspace_lock(self.workspace, self.config.lock_timeout_s, announce=self.announce))
        try:
            if self._backend is None:
                # Built under the lock: on `local` it provisions the emulated workspace's clusters.
                self._backend = make_backend(self.config, self.backend_name, self.code_dir, self.announce)
            pipeline = Pipeline(
                self.config,
                self._backend,
                self.workspace / PIPELINES_DIR,
                self.code_dir,
                force=self.force,
                announce=self.announce,
            )
        except BaseException:
            held.close()
            raise
        pipeline.report = self.report
        self._held = held
        return pipeline

    def __exit__(self, *exc_info: object) -> None:
        """Cancel the jobs still running on the emulator, then release the lock (always)."""
        held, self._held = self._held, None
        try:
            close = getattr(self._backend.ml_client, "close", None) if self._backend else None
            for name in close() if close else ():
                self.announce(f"canceled job {name} (its processes ended, its MLflow run marked KILLED)")
        finally:
            if held is not None:
                held.close()

    @property
    def locked(self) -> bool:
        """True while a `with session` block holds the workspace lock."""
        return self._held is not None

    # --- read-only views (no lock needed) ------------------------------------------------------
    @property
    def backend(self) -> Any:
        """The `AzureBackend` of this session (built by the first `with session` block).

        Raises:
            LaunchError: No block has been entered yet.
        """
        if self._backend is None:
            raise LaunchError(
                "the pipeline session has no backend yet",
                fix="run a step first (`with session as pipeline: pipeline.validate()`)",
            )
        return self._backend

    def results(self) -> dict[str, dict[str, Any]]:
        """Step -> result of every completed step, read from the state file now."""
        state = PipelineState(self.workspace / PIPELINES_DIR / f"{self.config.name}.json")
        return {step: record.result for step, record in state.steps.items() if record.status == "completed"}

    def mlflow_client(self) -> Any:
        """An `MlflowClient` on the workspace's MLflow server (the emulator's SQLite store on `local`)."""
        from mlflow.tracking import MlflowClient

        ml_client = self.backend.ml_client
        uri = ml_client.workspaces.get(ml_client.workspace_name).mlflow_tracking_uri
        return MlflowClient(tracking_uri=uri)
