"""Final-training configuration: load `configs/final_training.yaml` and resolve one run completely.

`load_final_training_config` is the only way the pipeline's final-training step learns what to
train. It validates the YAML (an unknown key names the closest valid one), resolves the dataset
(experiment default, an explicit data config inside `configs/`, or a local folder), merges the
hyperparameters (training defaults -> best configuration from selection -> non-null YAML
overrides), computes `spec_fp`/`exec_fp`, resolves the checkpoint to start from, and decides
the run: train a new variant, skip because a complete one exists, or resume an interrupted one.
The result is a frozen `ResolvedFinalTraining`; `mark_variant_running/complete/failed` keep the
variant's metadata.json and the index up to date.

The YAML schema and its validation live in `launch/final_training_schema.py`; finding and
checking the starting checkpoint (torch-free) lives in `launch/checkpoint_resolution.py`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launch.checkpoint_resolution import (
    checkpoint_by_path,
    checkpoint_by_reference,
    init_identity,
    latest_related_run,
    resolve_checkpoint_from_fingerprints,
    validate_checkpoint,
    variant_checkpoint,
)
from launch.final_training_schema import RunMode, SourceType, read_yaml_with_lines, validate_settings
from launch.fingerprints import (
    code_fingerprint,
    dataset_fingerprint,
    exec_fingerprint,
    fingerprint,
    spec_fingerprint,
)
from launch.jobs import frozen_mapping
from launch.variants import (
    INCOMPLETE_STATUSES,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_RUNNING,
    VariantRecord,
    VariantStore,
    backbone_slug,
    owned_by_another,
)
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    STAGE_FINAL,
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_STAGE,
)
from ner_lightning.errors import ConfigError

FINAL_TRAINING_CONFIG = "final_training.yaml"
#: Default training config read when no `train_config` is given.
TRAIN_CONFIG = "train.yaml"
DEFAULT_SEED = 42

Action = Literal["train", "skip", "resume"]

#: MLflow tag names of the variant bookkeeping (also on Azure runs, so any machine can find them).
TAG_SPEC_FP = "spec_fp"
TAG_EXEC_FP = "exec_fp"
TAG_VARIANT = "final_variant"

# --- Hyperparameter names -----------------------------------------------------------------
#: Canonical hyperparameter name -> training CLI argument (see docs/architecture.md).
CLI_ARGUMENTS: dict[str, str] = {
    "learning_rate": "model.learning_rate",
    "epochs": "trainer.max_epochs",
    "batch_size": "data.batch_size",
    "dropout": "model.dropout",
    "weight_decay": "model.weight_decay",
    "gradient_accumulation_steps": "trainer.accumulate_grad_batches",
    "warmup_ratio": "model.warmup_ratio",
    "max_grad_norm": "trainer.gradient_clip_val",
    "head": "model.head",
    "use_crf": "model.use_crf",
    "combine_train_validation": "data.combine_train_validation",
    "early_stopping.enabled": "early_stopping.enabled",
    "early_stopping.patience": "early_stopping.patience",
    "early_stopping.min_delta": "early_stopping.min_delta",
}
#: Other spellings accepted in best configurations and flat training configs.
ALIASES: dict[str, str] = {
    **{cli: name for name, cli in CLI_ARGUMENTS.items()},
    "lr": "learning_rate",
    "max_epochs": "epochs",
    "accumulate_grad_batches": "gradient_accumulation_steps",
    "gradient_clip_val": "max_grad_norm",
    "crf": "use_crf",
    "model.backbone": "backbone",
    "seed_everything": "seed",
    "random_seed": "seed",
    "trainer.precision": "precision",
    "trainer.deterministic": "deterministic",
}
#: Final training, by default, trains on train + validation with early stopping off (Phase 1 P1-3.7).
FINAL_TRAINING_BASE = {"combine_train_validation": True, "early_stopping.enabled": False}


# --- Resolved shape -------------------------------------------------------------------------
@dataclass(frozen=True)
class ResolvedDataset:
    """The dataset version a final run trains on.

    Attributes:
        name: Dataset (asset) name.
        version: Dataset version.
        fingerprint: Content fingerprint (from manifest.json, else sha256 of the split files).
        local_path: Local dataset folder.
        data_config: Data config the facts came from (relative to configs/), or None.
        labels: Ordered label set.
    """

    name: str
    version: str
    fingerprint: str
    local_path: str
    data_config: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedFinalTraining:
    """Everything the final-training job builder needs, fully resolved and frozen.

    Attributes:
        action: `train` (new or explicit variant), `skip` (a complete variant exists) or
            `resume` (continue an interrupted variant from its last.ckpt).
        run_mode: The run mode that produced the decision.
        source_type: `scratch`, `hpo_best` or `final_training`.
        backend: Backend name (`local`, `azure`): a folder level of the output layout.
        backbone: Backbone reference as written in configs.
        hyperparameters: Merged hyperparameters, canonical names (`early_stopping.*` dotted).
        seed: Random seed.
        use_crf: CRF head on/off.
        precision: Lightning precision.
        deterministic: Deterministic algorithms on/off.
        dataset: The resolved dataset.
        init_checkpoint: Checkpoint whose weights initialise a new variant (`--model.init_checkpoint`), or None.
        checkpoint_resolved_by: How it was found (`explicit`, `fingerprints`, `index`,
            `metadata`, `cache`, `hpo_best`), or None.
        resume_checkpoint: `last.ckpt` to resume from (action `resume`), or None.
        variant: Variant number.
        output_dir: The variant folder (holds metadata.json; the job's checkpoints go here).
        checkpoint: For `skip`, the complete variant's final checkpoint; else None.
        spec_fp: Spec fingerprint.
        exec_fp: Exec fingerprint.
        parent: `{spec_fp, exec_fp, variant}` of the parent final run, or None.
        mlflow_experiment: MLflow experiment name (never part of a fingerprint).
        mlflow_run_name: MLflow run name.
        mlflow_tags: Tags for the job and its run (stage, dataset, fingerprints, variant, user tags).
        config_path: The final_training.yaml used, or None on the deprecated inline path.
        config_sha256: sha256 of that file's bytes, or "".
        deprecated: True when built by the deprecated inline path.
    """

    action: Action
    run_mode: RunMode
    source_type: SourceType
    backend: str
    backbone: str
    hyperparameters: Mapping[str, Any]
    seed: int
    use_crf: bool
    precision: str
    deterministic: bool
    dataset: ResolvedDataset
    init_checkpoint: str | None
    checkpoint_resolved_by: str | None
    resume_checkpoint: str | None
    variant: int
    output_dir: str
    checkpoint: str | None
    spec_fp: str
    exec_fp: str
    parent: Mapping[str, Any] | None = None
    mlflow_experiment: str = ""
    mlflow_run_name: str = ""
    mlflow_tags: Mapping[str, str] = field(default_factory=frozen_mapping)
    config_path: str | None = None
    config_sha256: str = ""
    deprecated: bool = False

    def training_arguments(self) -> tuple[str, ...]:
        """Command-line overrides for `python -m ner_lightning fit` (without data dir and output dir).

        A new variant with an `init_checkpoint` gets `--model.init_checkpoint=<file>` (its weights
        start from that checkpoint; optimizer, schedule and epoch start fresh). A resumed variant gets
        `--ckpt_path=<last.ckpt>` instead: the resumed state already holds its trained weights.
        """
        arguments = [f"--model.backbone={self.backbone}", f"--seed_everything={self.seed}"]
        for name, value in sorted(self.hyperparameters.items()):
            # Searched parameters without a canonical name are CLI paths already (model.max_length).
            argument = CLI_ARGUMENTS.get(name, name if "." in name else None)
            if argument is not None and value is not None:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                arguments.append(f"--{argument}={text}")
        if self.resume_checkpoint:
            arguments.append(f"--ckpt_path={self.resume_checkpoint}")
        elif self.init_checkpoint:
            arguments.append(f"--model.init_checkpoint={self.init_checkpoint}")
        return tuple(arguments)


# --- Hyperparameter merging -----------------------------------------------------------------
def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def _canonical_names(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten and rename to canonical names (`model.learning_rate`/`lr` -> `learning_rate`)."""
    named = {}
    for key, value in _flatten(mapping).items():
        named[ALIASES.get(key, key)] = value
    return named


def training_defaults(train_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Canonical hyperparameters (and backbone/seed/precision/determinism) from a training config.

    Args:
        train_config: A LightningCLI-shaped config (`model:`, `data:`, `trainer:`,
            `early_stopping:`, `seed_everything:`) or a flat mapping of canonical names.

    Returns:
        Canonical name -> value for the names this module knows; other keys are dropped.
    """
    known = set(CLI_ARGUMENTS) | {"backbone", "seed", "precision", "deterministic"}
    return {key: value for key, value in _canonical_names(train_config or {}).items() if key in known}


#: Keys of a selection (launch/selection.py `Selection.to_json`) that are not hyperparameters.
_SELECTION_BOOKKEEPING = frozenset(
    {"dataset", "hyperparameters", "params", "checkpoint", "trial_id", "trial_name", "run_id", "git_commit"}
    | {"metrics", "metric", "value", "dataset_name", "dataset_version", "sweep_id", "criteria", "ranked"}
)


def best_config_values(best_config: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical values of a best configuration from selection.

    Args:
        best_config: `{"backbone": ..., "hyperparameters": {...}, ...}` or a flat mapping; keys
            may be canonical names, CLI paths (`model.learning_rate`) or aliases (`lr`).

    Returns:
        Canonical name -> value; bookkeeping keys (dataset, trial id, checkpoint, git commit,
        metrics) are left out.
    """
    values = {key: value for key, value in best_config.items() if key not in _SELECTION_BOOKKEEPING}
    values.update(best_config.get("hyperparameters") or best_config.get("params") or {})
    return _canonical_names(values)


def merge_hyperparameters(
    defaults: Mapping[str, Any], best: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge in precedence order: training defaults -> best configuration -> non-null YAML overrides.

    Args:
        defaults: Canonical values from the training config.
        best: Canonical values from the best configuration.
        overrides: The YAML `training` section (nested, nulls mean "keep").

    Returns:
        Canonical name -> value (`early_stopping.*` dotted), without backbone/seed/precision/determinism.
    """
    merged: dict[str, Any] = dict(FINAL_TRAINING_BASE)
    merged.update(defaults)
    merged.update(best)
    merged.update({key: value for key, value in _flatten(overrides).items() if value is not None})
    for key in ("backbone", "seed", "precision", "deterministic"):
        merged.pop(key, None)
    for key, value in list(merged.items()):
        if isinstance(value, str) and key in CLI_ARGUMENTS:
            # YAML reads `1e-5` as a string; fingerprints must see the number.
            with contextlib.suppress(ValueError):
                merged[key] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
    return merged


# --- Dataset resolution ---------------------------------------------------------------------
def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_output_root(root: str, root_dir: Path, config_path: Path, line: int | None) -> None:
    """Refuse an `output.root` that resolves outside the project (`..`, an absolute path elsewhere).

    Variant folders, the index and the cache are written and rewritten under that root; one outside
    the project could overwrite someone else's files.
    """
    if not _inside(root_dir / root, root_dir):
        raise ConfigError(
            f"output.root {root!r} resolves to {(root_dir / root).resolve()}, outside the project {root_dir.resolve()}",
            path=config_path,
            line=line,
            field="output.root",
            fix="use a folder inside the project, e.g. outputs/final_training",
        )


def _dataset_labels(folder: Path) -> tuple[str, ...]:
    from ner_lightning.data.records import load_dataset_folder, read_labels

    labels = read_labels(folder)
    return tuple(labels if labels is not None else load_dataset_folder(folder).labels)


def _from_data_config(
    root_dir: Path, config_dir: Path, relative: str, field_name: str, settings_path: Path | None
):
    path = Path(relative)
    path = path if path.is_absolute() else config_dir / path
    if not _inside(path, config_dir):
        raise ConfigError(
            f"data config {relative!r} is outside {config_dir}",
            path=settings_path,
            field=field_name,
            fix=f"put the data config under {config_dir} and give its path relative to it (e.g. data/my_data.yaml)",
        )
    if not path.is_file():
        raise ConfigError(
            f"data config {relative!r} does not exist ({path})",
            path=settings_path,
            field=field_name,
            fix=f"create it under {config_dir} or fix the path",
        )
    data, _, _ = read_yaml_with_lines(path)
    facts = data.get("dataset") or data.get("data_asset") or data
    local = next(
        (facts.get(key) for key in ("local_path", "source_dir", "path", "data_dir") if facts.get(key)), None
    )
    if not facts.get("name") or local is None:
        raise ConfigError(
            "a data config needs `name` and `local_path` (the dataset folder)",
            path=path,
            fix="write name: <asset name>, version: <version>, local_path: <folder>",
        )
    local_path = Path(str(local))
    local_path = local_path if local_path.is_absolute() else root_dir / local_path
    return (
        str(facts["name"]),
        str(facts.get("version", "1")),
        local_path,
        path.relative_to(config_dir).as_posix(),
    )


def resolve_dataset(
    root_dir: Path,
    config_dir: Path,
    experiment_config: Mapping[str, Any],
    dataset_settings: Mapping[str, Any],
    settings_path: Path | None = None,
) -> ResolvedDataset:
    """Resolve the dataset: local path override, else explicit data config, else the experiment's.

    Args:
        root_dir: Project root (relative dataset paths are relative to it).
        config_dir: `configs/` (data configs must live inside it).
        experiment_config: Experiment config holding `data_config` (relative to config_dir).
        dataset_settings: The YAML `dataset` section.
        settings_path: final_training.yaml, for error messages.

    Returns:
        The dataset with its content fingerprint and label set.
    """
    name = version = data_config = None
    local_path: Path | None = None
    explicit = dataset_settings.get("data_config")
    chosen = explicit or experiment_config.get("data_config")
    if chosen:
        field_name = "dataset.data_config" if explicit else "experiment.data_config"
        name, version, local_path, data_config = _from_data_config(
            root_dir, config_dir, str(chosen), field_name, settings_path
        )
    override = dataset_settings.get("local_path_override")
    if override:
        local_path = Path(override) if Path(override).is_absolute() else root_dir / override
    if local_path is None:
        raise ConfigError(
            "no dataset: neither dataset.data_config, dataset.local_path_override nor the experiment's data_config is set",
            path=settings_path,
            field="dataset",
            fix="set dataset.data_config (relative to configs/) or dataset.local_path_override",
        )
    if not local_path.is_dir():
        raise ConfigError(
            f"dataset folder {local_path} does not exist",
            path=settings_path,
            field="dataset.local_path_override" if override else "dataset.data_config",
            fix="point at a folder with train.jsonl and validation.jsonl",
        )
    return ResolvedDataset(
        name=name or local_path.name,
        version=version or "local",
        fingerprint=dataset_fingerprint(local_path),
        local_path=str(local_path),
        data_config=data_config,
        labels=_dataset_labels(local_path),
    )


# --- Main entry point -----------------------------------------------------------------------
def _portable_backbone(backbone: str, root_dir: Path) -> str:
    """Project-relative spelling of a backbone path inside the project (fingerprints travel)."""
    path = Path(backbone)
    if path.is_absolute() and _inside(path, root_dir):
        return path.resolve().relative_to(root_dir.resolve()).as_posix()
    return backbone


def load_final_training_config(
    root_dir: str | Path,
    config_dir: str | Path,
    best_config: Mapping[str, Any],
    experiment_config: Mapping[str, Any],
    train_config: Mapping[str, Any] | None = None,
    *,
    backend: str = "local",
    claim: bool = True,
    git_commit: str | None = None,
) -> ResolvedFinalTraining:
    """Load `configs/final_training.yaml` and resolve one final-training run.

    Args:
        root_dir: Project root (outputs and relative dataset paths live under it).
        config_dir: The configs folder (`root_dir / "configs"`).
        best_config: Best configuration from selection (backbone, hyperparameters, optional
            `checkpoint` of the best trial).
        experiment_config: Experiment config (`data_config` relative to config_dir, `name`).
        train_config: Training defaults; None reads `config_dir / "train.yaml"` when it exists.
        backend: Backend name (`local` or `azure`), a level of the output layout.
        claim: Allocate the variant folder now (atomic across processes). False only
            previews the decision and writes nothing.
        git_commit: Commit for the code fingerprint; None asks `NER_GIT_COMMIT`, then git.

    Returns:
        The resolved, frozen configuration and its decision.

    Raises:
        ConfigError: Invalid YAML, an unknown key, a bad value, a missing dataset or checkpoint.
    """
    root_dir, config_dir = Path(root_dir), Path(config_dir)
    path = config_dir / FINAL_TRAINING_CONFIG
    if path.is_file():
        data, lines, sha = read_yaml_with_lines(path)
        settings = validate_settings(data, path, lines)
        _check_output_root(settings["output"]["root"], root_dir, path, lines.get("output.root"))
    else:
        warnings.warn(
            f"{path} does not exist; falling back to the deprecated inline final-training configuration "
            "(plan defaults). Create configs/final_training.yaml (see docs/config/final_training.md).",
            DeprecationWarning,
            stacklevel=2,
        )
        settings, sha, path = validate_settings({}), "", None
    if train_config is None and (config_dir / TRAIN_CONFIG).is_file():
        train_config = read_yaml_with_lines(config_dir / TRAIN_CONFIG)[0]
    return _resolve(
        settings,
        root_dir=root_dir,
        config_dir=config_dir,
        best_config=best_config,
        experiment_config=experiment_config,
        train_config=train_config,
        backend=backend,
        claim=claim,
        git_commit=git_commit,
        config_path=path,
        config_sha256=sha,
        deprecated=path is None,
    )


def _resolve(
    settings: Mapping[str, Any],
    *,
    root_dir: Path,
    config_dir: Path,
    best_config: Mapping[str, Any],
    experiment_config: Mapping[str, Any],
    train_config: Mapping[str, Any] | None,
    backend: str,
    claim: bool,
    git_commit: str | None,
    config_path: Path | None,
    config_sha256: str,
    deprecated: bool,
    dataset: ResolvedDataset | None = None,
    seed_fallback: int = DEFAULT_SEED,
    bookkeeping: bool = True,
) -> ResolvedFinalTraining:
    defaults = training_defaults(train_config)
    best = best_config_values(best_config)
    backbone = best.get("backbone") or defaults.get("backbone")
    if not backbone:
        raise ConfigError(
            "no backbone: the best configuration and the training config name none",
            field="backbone",
            fix="pass the selection's best configuration (it carries `backbone`)",
        )
    backbone = _portable_backbone(str(backbone), root_dir)
    hyperparameters = merge_hyperparameters(defaults, best, settings["training"])
    seed = settings["seed"]["random_seed"]
    if seed is None:
        seed = best.get("seed", defaults.get("seed", seed_fallback))
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(
            f"seed must be an integer, got {seed!r}",
            path=config_path,
            field="seed.random_seed",
            fix="write an integer",
        )
    use_crf = bool(hyperparameters.get("use_crf", False))
    hyperparameters["use_crf"] = use_crf
    precision = str(defaults.get("precision", "32-true"))
    deterministic = bool(defaults.get("deterministic", False))
    if dataset is None:
        dataset = resolve_dataset(root_dir, config_dir, experiment_config, settings["dataset"], config_path)
    identity = settings["identity"]
    exec_fp = exec_fingerprint(
        code_fp=code_fingerprint(root_dir, git_commit),
        precision=precision,
        deterministic=deterministic,
        include_code_fp=identity["include_code_fp"],
        include_precision_fp=identity["include_precision_fp"],
        include_determinism_fp=identity["include_determinism_fp"],
    )
    dataset_facts = {"name": dataset.name, "version": dataset.version, "fingerprint": dataset.fingerprint}

    def spec_of(hparams: Mapping[str, Any], init_from: Mapping[str, Any] | None) -> str:
        return spec_fingerprint(
            backbone=backbone,
            hyperparameters={k: v for k, v in hparams.items() if k != "use_crf"},
            dataset=dataset_facts,
            seed=seed,
            use_crf=use_crf,
            labels=dataset.labels,
            init_from=init_from,
        )

    store = VariantStore(root_dir / settings["output"]["root"] / backend)
    source_type, mode = settings["source"]["type"], settings["run"]["mode"]
    ckpt = settings["checkpoint"]

    # --- checkpoint to initialise from ---
    init_checkpoint: str | None = None
    resolved_by: str | None = None
    parent: dict[str, Any] | None = None
    load = ckpt["load"] if ckpt["load"] is not None else source_type != "scratch"
    if source_type == "final_training":
        load = True
    if load:
        explicit = ckpt["source"] if ckpt["source"] is not None else settings["source"]["parent"]
        field_name = "checkpoint.source" if ckpt["source"] is not None else "source.parent"
        if isinstance(explicit, Mapping):
            init_checkpoint, parent = checkpoint_by_reference(store, explicit, field_name, config_path)
            resolved_by = "fingerprints"
        elif isinstance(explicit, str):
            init_checkpoint, parent = checkpoint_by_path(root_dir, store, explicit)
            resolved_by = "explicit"
        elif source_type == "hpo_best":
            init_checkpoint = best_config.get("checkpoint")
            resolved_by = "hpo_best" if init_checkpoint else None
        else:
            # Parent = latest complete run of the same model before this file's overrides.
            base = merge_hyperparameters(defaults, best, {})
            base["use_crf"] = use_crf
            init_checkpoint, resolved_by, parent = resolve_checkpoint_from_fingerprints(
                store, spec_of(base, None), exec_fp
            )
            if init_checkpoint is None:
                init_checkpoint, resolved_by, parent = latest_related_run(
                    store, exec_fp, backbone, dataset.fingerprint
                )
        if source_type == "final_training" and init_checkpoint is None:
            raise ConfigError(
                f"no complete previous final run found under {store.root} to continue from",
                path=config_path,
                field="source.parent",
                fix="run a first final training, or set source.parent to a variant folder or {spec_fp, exec_fp, variant}",
            )
        # A job-output reference (azureml://jobs/.../last.ckpt) is read by the job itself, on Azure ML
        # or the emulator; only a local file can be checked here.
        if (
            init_checkpoint is not None
            and ckpt["validate"]
            and not str(init_checkpoint).startswith("azureml://")
        ):
            validate_checkpoint(
                init_checkpoint, field_name if explicit is not None else "checkpoint.source", config_path
            )
    spec_fp = spec_of(hyperparameters, init_identity(init_checkpoint, parent) if init_checkpoint else None)

    # --- run decision ---
    slug = backbone_slug(backbone)
    meta = {
        "backbone": backbone,
        "backend": backend,
        "dataset": {**dataset_facts, "local_path": dataset.local_path, "data_config": dataset.data_config},
        "hyperparameters": hyperparameters,
        "seed": seed,
        "use_crf": use_crf,
        "precision": precision,
        "deterministic": deterministic,
        "run_mode": mode,
        "source_type": source_type,
        "init_checkpoint": init_checkpoint,
        "parent": parent,
    }
    variants = store.scan(spec_fp, exec_fp) if bookkeeping else []
    complete = [r for r in variants if r.status == STATUS_COMPLETE]
    requested = settings["variant"]["number"]
    action: Action = "train"
    record: VariantRecord | None = None
    resume_checkpoint: str | None = None
    skip_ok = settings["output"]["skip_if_complete"]

    if mode == "reuse_if_exists":
        chosen = [r for r in complete if requested is None or r.variant == requested]
        if chosen and skip_ok:
            action, record = "skip", chosen[-1]
    elif mode == "resume_if_incomplete":
        incomplete = [
            r
            for r in variants
            if r.status in INCOMPLETE_STATUSES
            and (requested is None or r.variant == requested)
            and not owned_by_another(r)  # a variant a live process is training is not resumable
        ]
        if requested is not None and any(r.variant == requested for r in complete) and skip_ok:
            action, record = "skip", next(r for r in complete if r.variant == requested)
        elif incomplete:
            record = store.acquire(incomplete[-1].path) if claim else incomplete[-1]
            last = record.last_checkpoint
            action = "resume" if last is not None else "train"
            resume_checkpoint = str(last) if last is not None else None
    if mode == "force_new":
        requested = None  # the plan: an explicit number is ignored when forcing a new variant

    if record is None:
        if not bookkeeping:
            number = requested or 1
            output_dir = store.variant_dir(slug, spec_fp, exec_fp, number)
        elif not claim:
            number = requested or store.next_variant_number(spec_fp, exec_fp)
            output_dir = store.variant_dir(slug, spec_fp, exec_fp, number)
        elif requested is not None:
            record = store.claim(slug, spec_fp, exec_fp, requested, meta)
            if record.status == STATUS_COMPLETE:
                raise ConfigError(
                    f"variant v{requested} of spec_{spec_fp}_exec_{exec_fp} is already complete",
                    path=config_path,
                    field="variant.number",
                    fix="set variant.number: null to get the next free number, or run.mode: reuse_if_exists",
                )
        else:
            record = store.allocate(slug, spec_fp, exec_fp, meta)
    if record is not None:
        number, output_dir = record.variant, record.path

    mlflow = settings["mlflow"]
    experiment = mlflow["experiment_name"] or f"{experiment_config.get('name', 'ner')}-{STAGE_FINAL}-{slug}"
    trial = best_config.get("trial_name") or best_config.get("trial_id")
    run_name = mlflow["run_name"] or (f"{slug}_{trial}_v{number}" if trial else f"{slug}_final_v{number}")
    tags = {
        **mlflow["tags"],
        TAG_STAGE: STAGE_FINAL,
        TAG_DATASET_NAME: dataset.name,
        TAG_DATASET_VERSION: dataset.version,
        TAG_DATASET_FINGERPRINT: dataset.fingerprint,
        TAG_SPEC_FP: spec_fp,
        TAG_EXEC_FP: exec_fp,
        TAG_VARIANT: str(number),
    }
    return ResolvedFinalTraining(
        action=action,
        run_mode=mode,
        source_type=source_type,
        backend=backend,
        backbone=backbone,
        hyperparameters=frozen_mapping(hyperparameters),
        seed=seed,
        use_crf=use_crf,
        precision=precision,
        deterministic=deterministic,
        dataset=dataset,
        init_checkpoint=init_checkpoint,
        checkpoint_resolved_by=resolved_by,
        resume_checkpoint=resume_checkpoint,
        variant=number,
        output_dir=str(output_dir),
        checkpoint=variant_checkpoint(record) if action == "skip" and record is not None else None,
        spec_fp=spec_fp,
        exec_fp=exec_fp,
        parent=frozen_mapping(parent) if parent else None,
        mlflow_experiment=experiment,
        mlflow_run_name=run_name,
        mlflow_tags=frozen_mapping(tags),
        config_path=str(config_path) if config_path else None,
        config_sha256=config_sha256,
        deprecated=deprecated,
    )


# --- Bookkeeping after the decision ---------------------------------------------------------
def _store_of(resolved: ResolvedFinalTraining) -> VariantStore:
    # output_dir = <backend root>/<slug>/spec_.._exec_../v<N>
    return VariantStore(Path(resolved.output_dir).parents[2])


def mark_variant_running(
    resolved: ResolvedFinalTraining,
    *,
    run_id: str | None = None,
    job_id: str | None = None,
    output_dir: str | None = None,
) -> VariantRecord:
    """Record that the variant's job started (status `running`).

    Args:
        resolved: The loader's result.
        run_id: MLflow run id of the job.
        job_id: Backend job id.
        output_dir: Where the job writes checkpoints, when not the variant folder itself.
    """
    fields = {"run_id": run_id, "job_id": job_id, "output_dir": output_dir or resolved.output_dir}
    return _store_of(resolved).update(Path(resolved.output_dir), STATUS_RUNNING, **fields)


def mark_variant_complete(
    resolved: ResolvedFinalTraining,
    *,
    checkpoint: str | None = None,
    metrics: Mapping[str, float] | None = None,
    run_id: str | None = None,
) -> VariantRecord:
    """Record that the variant finished (status `complete`) with its final checkpoint and metrics.

    Args:
        resolved: The loader's result.
        checkpoint: Final checkpoint; None uses `<output_dir>/checkpoints/best.ckpt` or `last.ckpt`.
        metrics: Final metrics (for example `{"val_f1": 0.9}`).
        run_id: MLflow run id, when not recorded yet.
    """
    store = _store_of(resolved)
    record = store.read_record(Path(resolved.output_dir))
    if checkpoint is None:
        output_dir = Path(str(record.metadata.get("output_dir") or record.path)) / CHECKPOINT_DIR
        found = [
            output_dir / name for name in (BEST_CHECKPOINT, "last.ckpt") if (output_dir / name).is_file()
        ]
        checkpoint = str(found[0]) if found else None
    fields: dict[str, Any] = {"checkpoint": checkpoint, "metrics": dict(metrics or {}), "error": None}
    if run_id is not None:
        fields["run_id"] = run_id
    return store.update(record.path, STATUS_COMPLETE, **fields)


def mark_variant_failed(
    resolved: ResolvedFinalTraining, *, error: str, run_id: str | None = None
) -> VariantRecord:
    """Record that the variant's job failed (status `failed`); resume_if_incomplete picks it up."""
    fields: dict[str, Any] = {"error": error}
    if run_id is not None:
        fields["run_id"] = run_id
    return _store_of(resolved).update(Path(resolved.output_dir), STATUS_FAILED, **fields)


# --- Deprecated inline path -----------------------------------------------------------------
def build_final_training_config(
    best_config: Mapping[str, Any], train_config: Mapping[str, Any], random_seed: int = DEFAULT_SEED
) -> ResolvedFinalTraining:
    """Deprecated: resolve a final run from the best and training configs alone (no YAML, no bookkeeping).

    Kept for older notebooks. It applies the plan's defaults, takes the dataset from
    `best_config["dataset"]` (`name`, `version`, `fingerprint`, `local_path`), never touches
    the output folders (variant 1, action `train`) and warns. Use `load_final_training_config`.

    Args:
        best_config: Best configuration from selection.
        train_config: Training defaults.
        random_seed: Seed when neither config names one.

    Returns:
        The same resolved shape as `load_final_training_config`.
    """
    warnings.warn(
        "build_final_training_config is deprecated; write configs/final_training.yaml and call "
        "load_final_training_config (see docs/config/final_training.md)",
        DeprecationWarning,
        stacklevel=2,
    )
    facts = dict(best_config.get("dataset") or {})
    local = str(facts.get("local_path") or facts.get("path") or "")
    labels: tuple[str, ...] = ()
    if local and Path(local).is_dir():
        labels = _dataset_labels(Path(local))
    dataset = ResolvedDataset(
        name=str(facts.get("name") or best_config.get("dataset_name") or "unknown"),
        version=str(facts.get("version") or best_config.get("dataset_version") or "unknown"),
        fingerprint=str(facts.get("fingerprint") or (dataset_fingerprint(Path(local)) if local else "")),
        local_path=local,
        labels=tuple(facts.get("labels") or labels),
    )
    root = Path.cwd()
    resolved = _resolve(
        validate_settings({}),
        root_dir=root,
        config_dir=root / "configs",
        best_config=best_config,
        experiment_config={},
        train_config=train_config,
        backend="local",
        claim=False,
        git_commit=None,
        config_path=None,
        config_sha256="",
        deprecated=True,
        dataset=dataset,
        seed_fallback=random_seed,
        bookkeeping=False,
    )
    return resolved


__all__ = [
    "FINAL_TRAINING_CONFIG",
    "ResolvedDataset",
    "ResolvedFinalTraining",
    "build_final_training_config",
    "fingerprint",
    "load_final_training_config",
    "mark_variant_complete",
    "mark_variant_failed",
    "mark_variant_running",
    "resolve_dataset",
]
