"""Backend-neutral job descriptions: the seam between orchestration and backends.

The orchestration (`launch/pipeline.py`) builds these frozen specs from configs; a backend
turns them into something that runs: `launch/azure/` into azure-ai-ml entities, submitted to an
Azure ML workspace or to its local emulator (`launch/local/`). Commands use Azure ML's
placeholder syntax (`${{inputs.name}}`, `${{outputs.name}}`, `${{search_space.name}}`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol

from ner_lightning.contract import PRIMARY_METRIC, PRIMARY_METRIC_GOAL

#: Which cluster role a job needs; each backend maps roles to its own compute.
ComputeRole = Literal["gpu", "cpu"]
JobStatus = Literal["Completed", "Failed", "Canceled", "Running", "Queued", "NotStarted"]


def frozen_mapping(values: Mapping | None = None) -> Mapping:
    """A read-only copy of `values` (specs are immutable once built)."""
    return MappingProxyType(dict(values or {}))


def job_output_uri(job_name: str, output: str, relative: str = "") -> str:
    """`azureml://jobs/<job>/outputs/<output>[/paths/<relative>]`: the one form of a job-output reference.

    `JobResult.outputs` holds it, `JobInput("job_output", ...)` takes it, Azure ML and the local
    emulator resolve it.
    """
    uri = f"azureml://jobs/{job_name}/outputs/{output}"
    return f"{uri}/paths/{relative.strip('/')}" if relative.strip("/") else uri


@dataclass(frozen=True)
class AssetRef:
    """A registered, immutable data asset or environment, referenced by name + version."""

    name: str
    version: str
    fingerprint: str = ""

    @property
    def azure_id(self) -> str:
        """The `azureml:<name>:<version>` reference jobs use (never a path)."""
        return f"azureml:{self.name}:{self.version}"


@dataclass(frozen=True)
class DataAssetSpec:
    """A dataset folder to register as a `uri_folder` asset.

    Attributes:
        name: Asset name.
        version: Asset version; immutable once registered.
        source_dir: Local folder in the canonical layout (validated before registering).
        description: Free text shown in the registry.
    """

    name: str
    version: str
    source_dir: str
    description: str = ""


@dataclass(frozen=True)
class EnvironmentSpec:
    """A versioned execution environment (base image + conda file)."""

    name: str
    version: str
    image: str
    conda_file: str
    description: str = ""


@dataclass(frozen=True)
class JobInput:
    """One job input.

    Attributes:
        type: `uri_folder` (a data asset or a folder), `uri_file` (a config file passed verbatim)
            or `job_output` (an output of an earlier job, for example the final model folder).
        value: Asset reference (`AssetRef`), local path, or for `job_output` the one form of a
            job-output reference, `azureml://jobs/<job>/outputs/<output>[/paths/<relative path>]`
            (what `JobResult.outputs` holds).
    """

    type: Literal["uri_folder", "uri_file", "job_output"]
    value: AssetRef | str


@dataclass(frozen=True)
class Distribution:
    """Multi-node PyTorch distribution; Lightning's num_nodes/devices are set to match."""

    instance_count: int = 1
    process_count_per_instance: int = 1


@dataclass(frozen=True)
class CommandJobSpec:
    """A single command job.

    Attributes:
        name: Stable step name (`dry_run`, `final_training`, `conversion`, or a trial name).
        stage: Value of the `stage` tag (see `ner_lightning.contract.STAGE_*`).
        command: Command line with `${{inputs.X}}` / `${{outputs.X}}` placeholders.
        inputs: Input name -> input.
        outputs: Output names (each a `uri_folder` the job writes).
        compute: Cluster role.
        environment: Registered environment to run in.
        experiment_name: Experiment (MLflow experiment) to file the run under.
        display_name: Human-readable run name.
        tags: Tags on the job and its MLflow run (config hashes, dataset, commit, stage...).
        env_vars: Extra environment variables for the process.
        distribution: Multi-node settings, or None for one process.
        timeout_s: Wall-clock limit, or None.
    """

    name: str
    stage: str
    command: str
    inputs: Mapping[str, JobInput]
    outputs: tuple[str, ...]
    compute: ComputeRole
    environment: AssetRef
    experiment_name: str
    display_name: str
    tags: Mapping[str, str] = field(default_factory=frozen_mapping)
    env_vars: Mapping[str, str] = field(default_factory=frozen_mapping)
    distribution: Distribution | None = None
    timeout_s: int | None = None


@dataclass(frozen=True)
class Choice:
    """Categorical search dimension."""

    values: tuple


@dataclass(frozen=True)
class Uniform:
    """Continuous search dimension, uniform between bounds."""

    min_value: float
    max_value: float


@dataclass(frozen=True)
class LogUniform:
    """Continuous search dimension, uniform in log space between the (positive) bounds."""

    min_value: float
    max_value: float


SearchDimension = Choice | Uniform | LogUniform


@dataclass(frozen=True)
class EarlyTermination:
    """Early-termination policy of a sweep.

    Attributes:
        policy: `median` (median stopping; Optuna's MedianPruner locally) or `bandit`.
        evaluation_interval: Check every N reported epochs.
        delay_evaluation: Do not stop trials before this many reports.
        slack_factor: Bandit slack (bandit only).
    """

    policy: Literal["median", "bandit"]
    evaluation_interval: int = 1
    delay_evaluation: int = 1
    slack_factor: float = 0.1


@dataclass(frozen=True)
class SweepLimits:
    """Budget of a sweep."""

    max_total_trials: int
    max_concurrent_trials: int = 1
    timeout_s: int | None = None
    trial_timeout_s: int | None = None


@dataclass(frozen=True)
class SweepJobSpec:
    """A hyperparameter sweep: a trial command job plus a search space and an objective.

    The trial command names every search dimension as `${{search_space.X}}`.
    """

    trial: CommandJobSpec
    search_space: Mapping[str, SearchDimension]
    sampling_algorithm: Literal["random", "grid", "bayesian"]
    limits: SweepLimits
    early_termination: EarlyTermination | None = None
    primary_metric: str = PRIMARY_METRIC
    goal: str = PRIMARY_METRIC_GOAL
    seed: int = 0


JobSpec = CommandJobSpec | SweepJobSpec


@dataclass(frozen=True)
class JobResult:
    """What a finished job left behind.

    Attributes:
        name: The spec's name.
        job_id: Backend id (Azure job name, local job folder name).
        run_id: MLflow run id of the job (for a sweep, the parent run).
        status: Terminal status.
        outputs: Output name -> location (local path or `azureml://` URI).
        metrics: Last value of each metric of the run.
        params: Params of the run (e.g. the int8 recipe the conversion job chose).
        error: Error text when the job failed (the job log's tail locally).
        log_path: Where the job's log can be read.
    """

    name: str
    job_id: str
    run_id: str
    status: JobStatus
    outputs: Mapping[str, str] = field(default_factory=frozen_mapping)
    metrics: Mapping[str, float] = field(default_factory=frozen_mapping)
    error: str = ""
    log_path: str = ""
    params: Mapping[str, str] = field(default_factory=frozen_mapping)


@dataclass(frozen=True)
class TrialResult:
    """One sweep trial as selection sees it."""

    trial_id: str
    run_id: str
    status: JobStatus
    params: Mapping[str, object]
    metrics: Mapping[str, float]
    error: str = ""


@dataclass(frozen=True)
class ModelRegistration:
    """An int8 ONNX model folder to register, with the lineage that allows it."""

    name: str
    path: str
    tags: Mapping[str, str]
    description: str = ""


@dataclass(frozen=True)
class RegisteredModel:
    """A model version in the registry."""

    name: str
    version: str
    tags: Mapping[str, str]
    reused: bool = False


class Backend(Protocol):
    """What the orchestration needs from a backend: `launch.azure.backend.AzureBackend`, on an Azure
    ML workspace or on the local emulator (`launch.local.EmulatedMLClient`)."""

    name: str

    def validate_infrastructure(self) -> None:
        """Fail fast, listing everything missing and how to create it; never create anything."""
        ...

    def ensure_data_asset(self, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register the dataset version, or reuse it when the fingerprint matches.

        Returns the reference and whether it was reused. Raises LaunchError when the same
        name + version exists with another fingerprint.
        """
        ...

    def ensure_folder_asset(self, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register any folder (e.g. a backbone) as a `uri_folder` data asset; same immutability rule."""
        ...

    def registered_data_asset(self, name: str, version: str) -> AssetRef:
        """A data asset registered beforehand, with its content fingerprint."""
        ...

    def ensure_environment(self, spec: EnvironmentSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Register the environment version, or reuse it; same immutability rule as assets."""
        ...

    def run(self, job: CommandJobSpec, on_submitted: Callable[[str], Any] = ...) -> JobResult:
        """Submit a command job, report its name at once, and wait for its terminal status."""
        ...

    def attach(self, job: CommandJobSpec, job_name: str) -> JobResult:
        """Wait for a command job submitted earlier (a rerun re-attaches instead of resubmitting)."""
        ...

    def run_sweep(
        self, sweep: SweepJobSpec, on_submitted: Callable[[str], Any] = ...
    ) -> tuple[JobResult, list[TrialResult]]:
        """Submit a sweep, report its name, wait for it, and return its parent result and every trial."""
        ...

    def attach_sweep(self, sweep: SweepJobSpec, job_name: str) -> tuple[JobResult, list[TrialResult]]:
        """Wait for a sweep submitted earlier and return its parent result and every trial."""
        ...

    def job_status(self, job_name: str) -> str | None:
        """Status of a submitted job, or None when the workspace does not know it."""
        ...

    def download_output(self, job_name: str, output: str, target: Path) -> Path:
        """Download a finished job's named output under `target`; returns its folder."""
        ...

    def log_artifacts(self, run_id: str, folder: str, artifact_path: str) -> None:
        """Attach a local folder to a run of the workspace's MLflow server."""
        ...

    def output_fingerprint(self, job_name: str, output: str) -> str | None:
        """Content fingerprint of a completed job's named output; None when the job or output is gone."""
        ...

    def model_fingerprint(self, name: str, version: str, recorded: str | None = None) -> str | None:
        """Content fingerprint of a registered model version's files (to compare with `recorded`, its
        `content_sha256` tag); None when they are gone."""
        ...

    def register_model(self, registration: ModelRegistration) -> RegisteredModel:
        """Register a model version after the lineage check (never overwriting one)."""
        ...
