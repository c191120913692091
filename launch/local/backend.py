"""`LocalBackend`: the `launch.jobs.Backend` protocol on a local workspace folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from launch.jobs import (
    AssetRef,
    CommandJobSpec,
    DataAssetSpec,
    EnvironmentSpec,
    JobResult,
    ModelRegistration,
    RegisteredModel,
    SweepJobSpec,
    TrialResult,
)
from launch.local.assets import LocalAssetRegistry
from launch.local.models import register_model
from launch.local.runner import LocalJobRunner
from launch.local.sweep import run_sweep
from launch.local.workspace import DEFAULT_WORKSPACE, LocalWorkspace


class LocalBackend:
    """Runs the Phase 1 jobs on this machine, with the Azure backend's interface.

    Args:
        workspace: Workspace folder (MLflow store, assets, job folders); created when missing.
        code_dir: Working directory of the jobs (default: current directory).
        poll_interval_s: How often running jobs are polled.
        announce: Called with progress lines.
    """

    name = "local"

    def __init__(
        self,
        workspace: str | Path = DEFAULT_WORKSPACE,
        code_dir: str | Path | None = None,
        poll_interval_s: float = 1.0,
        announce: Callable[[str], Any] = print,
    ) -> None:
        self.workspace = LocalWorkspace(workspace)
        self.assets = LocalAssetRegistry(self.workspace)
        self.announce = announce
        self.runner = LocalJobRunner(self.workspace, self.assets, code_dir, poll_interval_s, announce)

    def validate_infrastructure(self) -> None:
        """The workspace folder must be writable and its MLflow store openable."""
        self.workspace.ensure_writable()
        client = self.workspace.mlflow_client()
        client.search_experiments(max_results=1)

    def ensure_data_asset(self, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Copy the dataset into the workspace as `name:version`, or reuse the same content."""
        return self.assets.ensure_data_asset(spec, fingerprint)

    def ensure_environment(self, spec: EnvironmentSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Record the environment version (jobs run in this interpreter), or reuse it."""
        return self.assets.ensure_environment(spec, fingerprint)

    def run(self, job: CommandJobSpec) -> JobResult:
        """Run a command job as a subprocess and wait for it."""
        return self.runner.run(job)

    def run_sweep(self, sweep: SweepJobSpec) -> tuple[JobResult, list[TrialResult]]:
        """Run a sweep as an Optuna study of subprocess trials."""
        return run_sweep(self.runner, sweep, self.announce)

    def register_model(self, registration: ModelRegistration) -> RegisteredModel:
        """Register a converted final-training model in the workspace's MLflow registry."""
        return register_model(self.workspace, registration)

    def log_artifacts(self, run_id: str, folder: str, artifact_path: str) -> None:
        """Attach a folder to an MLflow run of the workspace (e.g. the selection table to the sweep)."""
        self.workspace.mlflow_client().log_artifacts(run_id, folder, artifact_path)

    def data_asset_path(self, ref: AssetRef) -> Path:
        """Local folder of a registered dataset version."""
        return self.assets.data_asset_path(ref.name, ref.version)
