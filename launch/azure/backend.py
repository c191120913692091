"""`AzureBackend`: the `Backend` protocol of launch/jobs.py on an Azure ML workspace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from launch.azure.assets import register_data_asset
from launch.azure.compute import ComputeConfig
from launch.azure.entities import command_entity, sweep_entity
from launch.azure.environment import register_environment
from launch.azure.infrastructure import validate_infrastructure
from launch.azure.submit import (
    RunReader,
    list_sweep_children,
    mlflow_run_reader,
    outputs_of,
    stream,
    submit,
    wait,
)
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
    frozen_mapping,
)


class AzureBackend:
    """Runs the neutral job specs as Azure ML jobs.

    Args:
        ml_client: An `azure.ai.ml.MLClient` (see `launch.azure.workspace.create_ml_client`).
        compute: Cluster per compute role (`configs/azure/compute.yaml`).
        code_dir: Folder uploaded as every job's code snapshot (the repository root).
        stream_logs: Stream job logs while waiting instead of polling quietly.
        poll_s: Seconds between status polls.
        read_run: Reads MLflow metrics/params of a run (default: the workspace's MLflow server).
        announce: Called with progress lines.
    """

    name = "azure"

    def __init__(
        self,
        ml_client: Any,
        compute: ComputeConfig,
        code_dir: str | Path = ".",
        *,
        stream_logs: bool = False,
        poll_s: float = 30.0,
        read_run: RunReader | None = None,
        announce: Callable[[str], Any] = print,
    ) -> None:
        self.ml_client = ml_client
        self.compute = compute
        self.code_dir = Path(code_dir).resolve()
        self.stream_logs = stream_logs
        self.poll_s = poll_s
        self._read_run = read_run
        self.announce = announce

    @property
    def read_run(self) -> RunReader:
        """The MLflow reader, built on first use (it needs the workspace's tracking URI)."""
        if self._read_run is None:
            self._read_run = mlflow_run_reader(self.ml_client)
        return self._read_run

    def validate_infrastructure(self) -> None:
        """Check workspace, datastore and clusters; raise one message listing what is missing."""
        validate_infrastructure(self.ml_client, self.compute)

    def ensure_data_asset(self, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register the dataset version (validated first), or reuse it when the fingerprint matches."""
        return register_data_asset(self.ml_client, spec, fingerprint)

    def ensure_environment(self, spec: EnvironmentSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register the environment version, or reuse it when its definition is unchanged."""
        return register_environment(self.ml_client, spec, fingerprint)

    def _finish(self, name: str, job: Any, outputs: tuple[str, ...]) -> JobResult:
        self.announce(f"submitted {name}: {job.name} {getattr(job, 'studio_url', '') or ''}".rstrip())
        if self.stream_logs:
            try:
                stream(self.ml_client, job.name)
            except Exception as error:  # the SDK raises on a failed job; the status below says which
                self.announce(f"{job.name}: {error}")
        status = wait(self.ml_client, job.name, poll_s=self.poll_s, echo=self.announce)
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        try:
            metrics, params = (dict(part) for part in self.read_run(job.name))
        except Exception as error:  # a job that failed early may have no MLflow run
            self.announce(f"{job.name}: no metrics ({error})")
        return JobResult(
            name=name,
            job_id=job.name,
            run_id=job.name,
            status=status,  # type: ignore[arg-type]
            outputs=frozen_mapping(outputs_of(job.name, outputs)),
            metrics=frozen_mapping(metrics),
            error=""
            if status == "Completed"
            else f"job ended {status}; see {getattr(job, 'studio_url', '')}",
            log_path=str(getattr(job, "studio_url", "") or ""),
            params=frozen_mapping(params),
        )

    def run(self, job: CommandJobSpec) -> JobResult:
        """Submit a command job and wait for its terminal status."""
        submitted = submit(self.ml_client, command_entity(job, self.compute, self.code_dir))
        return self._finish(job.name, submitted, job.outputs)

    def run_sweep(self, sweep: SweepJobSpec) -> tuple[JobResult, list[TrialResult]]:
        """Submit a sweep, wait for it, and return the parent result and every trial."""
        submitted = submit(self.ml_client, sweep_entity(sweep, self.compute, self.code_dir))
        result = self._finish(sweep.trial.name, submitted, ())
        return result, list_sweep_children(self.ml_client, submitted.name, self.read_run)

    def log_artifacts(self, run_id: str, folder: str, artifact_path: str) -> None:
        """Attach a local folder to a run on the workspace's MLflow server (e.g. the selection table)."""
        from mlflow.tracking import MlflowClient

        uri = self.ml_client.workspaces.get(self.ml_client.workspace_name).mlflow_tracking_uri
        MlflowClient(tracking_uri=uri).log_artifacts(run_id, folder, artifact_path)

    def register_model(self, registration: ModelRegistration) -> RegisteredModel:
        """Register the model folder as a new version; reuse a version with identical tags."""
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model
        from azure.core.exceptions import ResourceNotFoundError

        tags = dict(registration.tags)
        try:
            existing_versions = list(self.ml_client.models.list(name=registration.name))
        except ResourceNotFoundError:
            existing_versions = []
        for existing in existing_versions:
            if dict(existing.tags or {}) == tags:
                return RegisteredModel(
                    registration.name, str(existing.version), frozen_mapping(tags), reused=True
                )
        model = self.ml_client.models.create_or_update(
            Model(
                name=registration.name,
                path=registration.path,
                type=AssetTypes.CUSTOM_MODEL,
                tags=tags,
                description=registration.description,
            )
        )
        return RegisteredModel(registration.name, str(model.version), frozen_mapping(tags))
