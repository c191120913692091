"""`AzureBackend`: the `Backend` protocol of launch/jobs.py on an Azure ML workspace.

The same class drives a real workspace (`azure.ai.ml.MLClient`) and the local emulator
(`launch.local.EmulatedMLClient`): `--backend local` is this backend on the emulated workspace.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from launch.azure.assets import register_data_asset, register_folder_asset
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
from launch.errors import LaunchError
from launch.fingerprints import folder_fingerprint, model_content_sha256, registered_model_fingerprint
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
from launch.lineage import (
    STAGE_ARCHIVED,
    TAG_CONTENT_SHA256,
    TAG_FINAL_RUN_ID,
    TAG_PIPELINE,
    TAG_SUPERSEDED_BY,
    check_registration,
)
from ner_lightning.contract import STAGE_PROD, TAG_DATASET_FINGERPRINT, TAG_DATASET_NAME, TAG_STAGE

#: Called with the job name right after submission (the pipeline records it before waiting).
OnSubmitted = Callable[[str], Any]
#: Seconds a job may wait for a node on top of its own time limit before `wait` gives up.
QUEUE_ALLOWANCE_S = 3600


def _files_gone(found: str | None, recorded: str | None) -> bool:
    """Whether a registered version's files are missing, or differ from the content hash it was tagged with."""
    return found is None or (recorded is not None and found != recorded)


def _no_op(_name: str) -> None:
    return None


class AzureBackend:
    """Runs the neutral job specs as Azure ML jobs (on a workspace or on the emulator).

    Args:
        ml_client: An `azure.ai.ml.MLClient` or `launch.local.EmulatedMLClient`.
        compute: Cluster per compute role (`configs/azure/compute.yaml`).
        code_dir: Folder uploaded as every job's code snapshot (the repository root).
        stream_logs: Stream job logs while waiting; None (default) streams when stdout is a terminal.
        poll_s: Seconds between status polls.
        read_run: Reads MLflow metrics/params of a run (default: the workspace's MLflow server).
        announce: Called with progress lines.
        name: Backend name in summaries and the final-training output layout.
        queue_allowance_s: Waiting time allowed on top of a job's own limit before giving up.
    """

    def __init__(
        self,
        ml_client: Any,
        compute: ComputeConfig,
        code_dir: str | Path = ".",
        *,
        stream_logs: bool | None = None,
        poll_s: float = 30.0,
        read_run: RunReader | None = None,
        announce: Callable[[str], Any] = print,
        name: str = "azure",
        queue_allowance_s: float = QUEUE_ALLOWANCE_S,
    ) -> None:
        self.ml_client = ml_client
        self.compute = compute
        self.code_dir = Path(code_dir).resolve()
        self.stream_logs = sys.stdout.isatty() if stream_logs is None else stream_logs
        self.poll_s = poll_s
        self._read_run = read_run
        self.announce = announce
        self.name = name
        self.queue_allowance_s = queue_allowance_s

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

    def registered_data_asset(self, name: str, version: str) -> AssetRef:
        """A data asset registered beforehand (not by this pipeline), with its content fingerprint.

        Raises:
            LaunchError: It does not exist, or carries no fingerprint tag.
        """
        from azure.core.exceptions import ResourceNotFoundError

        try:
            asset = self.ml_client.data.get(name=name, version=version)
        except ResourceNotFoundError:
            raise LaunchError(
                f"data asset {name}:{version} is not registered in the workspace",
                field="dataset.registered",
                fix="register it first (a preset with dataset.source_dir or dataset.prepare, e.g. "
                "configs/pipeline/small.yaml, or `az ml data create`), or fix dataset.name/version",
            ) from None
        fingerprint = (asset.tags or {}).get(TAG_DATASET_FINGERPRINT, "")
        if not fingerprint:
            raise LaunchError(
                f"data asset {name}:{version} has no `{TAG_DATASET_FINGERPRINT}` tag",
                field="dataset.registered",
                fix="register the dataset through the pipeline (it tags the content fingerprint) as a new version",
            )
        return AssetRef(name, version, fingerprint)

    def ensure_folder_asset(self, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register any folder (e.g. a backbone) as a `uri_folder` data asset, or reuse it."""
        return register_folder_asset(self.ml_client, spec, fingerprint)

    def ensure_environment(self, spec: EnvironmentSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register the environment version, or reuse it when its definition is unchanged."""
        return register_environment(self.ml_client, spec, fingerprint)

    def max_instances(self, role: str) -> int:
        """The configured node bound of the cluster of `role` (checked before a sweep is submitted)."""
        return self.compute.clusters[role].max_instances

    def download_output(self, job_name: str, output: str, target: Path) -> Path:
        """Download a finished job's named output into `target`; returns the output's folder."""
        self.ml_client.jobs.download(job_name, download_path=str(target), output_name=output)
        return target / "named-outputs" / output

    def output_fingerprint(self, job_name: str, output: str) -> str | None:
        """Content fingerprint of a completed job's named output, or None when the job or the output is gone.

        Used before a pipeline step reuses a job's output (the conversion's model folder): the
        output is downloaded and hashed, so a deleted or altered output is produced again.
        """
        from azure.ai.ml.exceptions import MlException
        from azure.core.exceptions import ResourceNotFoundError

        if self.job_status(job_name) != "Completed":
            return None
        with tempfile.TemporaryDirectory(prefix="ner-output-check-") as scratch:
            try:
                folder = self.download_output(job_name, output, Path(scratch))
            except (ResourceNotFoundError, MlException, OSError):
                return None
            if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
                return None
            return folder_fingerprint(folder)

    def model_fingerprint(self, name: str, version: str, recorded: str | None = None) -> str | None:
        """Content fingerprint of a registered model version's files, or None when the version or its
        files are gone (compared with its `content_sha256` tag, `recorded`, before the pipeline reuses
        it; `launch.fingerprints.registered_model_fingerprint`)."""
        from azure.ai.ml.exceptions import MlException
        from azure.core.exceptions import ResourceNotFoundError

        with tempfile.TemporaryDirectory(prefix="ner-model-check-") as scratch:
            try:
                self.ml_client.models.download(name=name, version=version, download_path=scratch)
            except (ResourceNotFoundError, MlException, OSError):
                return None
            root = Path(scratch) / name
            entries = list(root.iterdir()) if root.is_dir() else []
            if not entries:
                return None
            # The SDK puts a folder model under <name>/<folder name>/.
            folder = entries[0] if len(entries) == 1 and entries[0].is_dir() else root
            return registered_model_fingerprint(folder, recorded)

    def _finish(
        self, name: str, job_name: str, outputs: tuple[str, ...], timeout_s: float | None
    ) -> JobResult:
        job = self.ml_client.jobs.get(job_name)
        url = str(getattr(job, "studio_url", "") or "")
        if self.stream_logs:
            try:
                stream(self.ml_client, job_name)
            except Exception as error:  # the SDK raises on a failed job; the status below says which
                self.announce(f"{job_name}: {str(error).splitlines()[0] if str(error) else error!r}")
        limit = None if timeout_s is None else float(timeout_s) + self.queue_allowance_s
        status = wait(self.ml_client, job_name, poll_s=self.poll_s, timeout_s=limit, echo=self.announce)
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        try:
            metrics, params = (dict(part) for part in self.read_run(job_name))
        except Exception as error:  # a job that failed early may have no MLflow run
            self.announce(f"{job_name}: no metrics ({error})")
        error_text = ""
        if status != "Completed":
            properties = getattr(self.ml_client.jobs.get(job_name), "properties", None) or {}
            error_text = str(properties.get("error") or f"job ended {status}; see {url}")
        return JobResult(
            name=name,
            job_id=job_name,
            run_id=job_name,
            status=status,  # type: ignore[arg-type]
            outputs=frozen_mapping(outputs_of(job_name, outputs)),
            metrics=frozen_mapping(metrics),
            error=error_text,
            log_path=url,
            params=frozen_mapping(params),
        )

    def run(self, job: CommandJobSpec, on_submitted: OnSubmitted = _no_op) -> JobResult:
        """Submit a command job, report its name, and wait for its terminal status."""
        submitted = submit(self.ml_client, command_entity(job, self.compute, self.code_dir))
        self.announce(
            f"submitted {job.name}: {submitted.name} {getattr(submitted, 'studio_url', '') or ''}".rstrip()
        )
        on_submitted(submitted.name)
        return self._finish(job.name, submitted.name, job.outputs, job.timeout_s)

    def attach(self, job: CommandJobSpec, job_name: str) -> JobResult:
        """Wait for an already submitted command job (a rerun re-attaches instead of resubmitting)."""
        self.announce(f"re-attached to {job.name}: {job_name}")
        return self._finish(job.name, job_name, job.outputs, job.timeout_s)

    def run_sweep(
        self, sweep: SweepJobSpec, on_submitted: OnSubmitted = _no_op
    ) -> tuple[JobResult, list[TrialResult]]:
        """Submit a sweep, report its name, wait for it, and return the parent result and every trial."""
        self._check_sweep_fits(sweep)
        submitted = submit(self.ml_client, sweep_entity(sweep, self.compute, self.code_dir))
        self.announce(
            f"submitted {sweep.trial.name}: {submitted.name} {getattr(submitted, 'studio_url', '') or ''}".rstrip()
        )
        on_submitted(submitted.name)
        return self.attach_sweep(sweep, submitted.name)

    def attach_sweep(self, sweep: SweepJobSpec, job_name: str) -> tuple[JobResult, list[TrialResult]]:
        """Wait for an already submitted sweep and return the parent result and every trial."""
        result = self._finish(sweep.trial.name, job_name, (), sweep.limits.timeout_s)
        return result, list_sweep_children(self.ml_client, job_name, self.read_run)

    def _check_sweep_fits(self, sweep: SweepJobSpec) -> None:
        nodes = sweep.trial.distribution.instance_count if sweep.trial.distribution else 1
        needed = nodes * sweep.limits.max_concurrent_trials
        bound = self.max_instances(sweep.trial.compute)
        if needed > bound:
            raise LaunchError(
                f"the sweep runs {sweep.limits.max_concurrent_trials} concurrent trials x {nodes} node(s) = "
                f"{needed} nodes, but the {sweep.trial.compute} cluster "
                f"{self.compute.cluster_name(sweep.trial.compute)!r} has max_instances={bound}",
                field="limits.max_concurrent_trials",
                fix=f"lower max_concurrent_trials to {max(bound // nodes, 1)} or fewer, use fewer nodes, "
                "or raise max_instances in configs/azure/compute.yaml (then run ner-provision)",
            )

    def cancel(self, job_name: str) -> None:
        """Cancel a submitted job."""
        self.ml_client.jobs.begin_cancel(job_name).result()

    def job_status(self, job_name: str) -> str | None:
        """The status of a submitted job, or None when the workspace does not know it."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return str(self.ml_client.jobs.get(job_name).status)
        except ResourceNotFoundError:
            return None

    def log_artifacts(self, run_id: str, folder: str, artifact_path: str) -> None:
        """Attach a local folder to a run on the workspace's MLflow server (e.g. the selection table)."""
        from mlflow.tracking import MlflowClient

        uri = self.ml_client.workspaces.get(self.ml_client.workspace_name).mlflow_tracking_uri
        MlflowClient(tracking_uri=uri).log_artifacts(run_id, folder, artifact_path)

    def register_model(self, registration: ModelRegistration) -> RegisteredModel:
        """Register the converted model folder as a new version after the lineage check.

        The lineage (`lineage.final_run_id` must name a final-training job) and the folder (an int8
        ONNX conversion output, no checkpoint) are checked as on every backend; a job output is
        downloaded for the check. A version of the same lineage is reused; a name owned by another
        pipeline or dataset is refused.

        Raises:
            LaunchError: The lineage or folder is not registrable, or the name has another owner.
        """
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model
        from azure.core.exceptions import ResourceNotFoundError

        tags = dict(registration.tags)
        final_tags: dict[str, str] | None
        try:
            final_tags = dict(self.ml_client.jobs.get(tags.get(TAG_FINAL_RUN_ID, "")).tags or {})
        except (ResourceNotFoundError, KeyError):
            final_tags = None
        with tempfile.TemporaryDirectory(prefix="ner-registration-") as scratch:
            folder = registration.path
            if folder.startswith("azureml://jobs/"):
                job_name, output = folder.split("/")[3], folder.split("/")[5]
                folder = str(self.download_output(job_name, output, Path(scratch)))
            check_registration(
                ModelRegistration(registration.name, folder, registration.tags, registration.description),
                final_tags,
            )
            tags[TAG_CONTENT_SHA256] = model_content_sha256(folder)
        try:
            existing_versions = list(self.ml_client.models.list(name=registration.name))
        except ResourceNotFoundError:
            existing_versions = []
        owner = {TAG_PIPELINE: tags.get(TAG_PIPELINE, ""), TAG_DATASET_NAME: tags.get(TAG_DATASET_NAME, "")}
        for existing in existing_versions:
            found = {key: (existing.tags or {}).get(key, "") for key in owner}
            if found != owner:
                raise LaunchError(
                    f"a registered model named {registration.name!r} already exists with another lineage "
                    f"({', '.join(f'{k}={v}' for k, v in found.items())}; this one has "
                    f"{', '.join(f'{k}={v}' for k, v in owner.items())})",
                    field="registration.model_name",
                    fix="choose another registration.model_name in the pipeline config; registered models "
                    "are never overwritten",
                )
            # Idempotent by lineage and by content: a rerun after the pipeline state was lost, or a
            # forced registration of the same folder, finds the version it registered before.
            existing_tags = existing.tags or {}
            same = existing_tags.get(TAG_FINAL_RUN_ID) == tags.get(TAG_FINAL_RUN_ID) or (
                existing_tags.get(TAG_CONTENT_SHA256) == tags[TAG_CONTENT_SHA256]
            )
            if same and _files_gone(
                self.model_fingerprint(
                    registration.name, str(existing.version), existing_tags.get(TAG_CONTENT_SHA256)
                ),
                existing_tags.get(TAG_CONTENT_SHA256),
            ):
                # Its files are gone or changed: never hand out a version that points at nothing;
                # a new version is registered and this one archived with the other prod versions.
                self.announce(
                    f"  model {registration.name} version {existing.version}: its files are missing or no "
                    "longer match its content_sha256; registering a new version"
                )
                continue
            if same:
                return RegisteredModel(
                    registration.name, str(existing.version), frozen_mapping(dict(existing_tags)), reused=True
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
        if tags.get(TAG_STAGE) == STAGE_PROD:
            self._archive_previous_prod(existing_versions, str(model.version))
        return RegisteredModel(registration.name, str(model.version), frozen_mapping(tags))

    def _archive_previous_prod(self, versions: list[Any], new_version: str) -> None:
        """One `stage=prod` version per lineage: earlier prod versions become `stage=archived`.

        Model tags are mutable on Azure ML (the content and version are not), so the older version
        stays registered and usable, with `superseded_by` naming its replacement; promoting it again
        is a tag edit.
        """
        for existing in versions:
            existing_tags = dict(existing.tags or {})
            if existing_tags.get(TAG_STAGE) != STAGE_PROD or str(existing.version) == new_version:
                continue
            existing.tags = {**existing_tags, TAG_STAGE: STAGE_ARCHIVED, TAG_SUPERSEDED_BY: new_version}
            self.ml_client.models.create_or_update(existing)
            self.announce(f"  model {existing.name} version {existing.version}: stage prod -> archived")
