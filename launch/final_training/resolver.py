"""Final-training configuration: load `configs/final_training.yaml` and resolve one run completely.

`load_final_training_config` is the only way the pipeline's final-training step learns what to
train (`launch/steps/final_training.py`). It validates the YAML (one loader:
`launch.configs.load_config`; an unknown key names the closest valid one with its line), takes
the dataset (handed over by the pipeline, or resolved from a data config), merges the
hyperparameters (`launch/final_training/hyperparameters.py`), computes `spec_fp`/`exec_fp`,
resolves and checks the checkpoint to start from, and applies the run mode
(`launch/final_training/decision.py`). The result is a frozen `ResolvedFinalTraining`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from launch.checkpoint_resolution import backbone_architecture, variant_checkpoint
from launch.configs import load_config, thaw
from launch.errors import LaunchError
from launch.final_training.dataset import (
    check_output_root,
    local_backbone,
    portable_backbone,
    resolve_dataset,
)
from launch.final_training.decision import (
    CheckpointExists,
    decide,
    local_checkpoint_exists,
    open_variant,
)
from launch.final_training.hyperparameters import (
    best_config_values,
    head_is_crf,
    merge_configs,
    merge_hyperparameters,
    training_defaults,
)
from launch.final_training.resolved import (
    TAG_EXEC_FP,
    TAG_SPEC_FP,
    TAG_VARIANT,
    ResolvedDataset,
    ResolvedFinalTraining,
)
from launch.final_training.starting_point import StartingPoint, resolve_starting_point
from launch.final_training_schema import validate_settings
from launch.fingerprints import code_fingerprint, exec_fingerprint, spec_fingerprint
from launch.jobs import frozen_mapping
from launch.variant_record import backbone_slug
from launch.variants import VariantStore
from ner_lightning.contract import (
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
#: Turns a checkpoint reference (an azureml:// job output) into a local file to check, or None.
Locate = Callable[[str], "Path | None"]


def read_settings(path: Path, root_dir: Path) -> tuple[dict[str, Any], str]:
    """Read and validate final_training.yaml with the launcher's one YAML loader.

    Returns:
        (the complete settings, sha256 of the file's bytes).

    Raises:
        LaunchError: The file is missing, not UTF-8 or not valid YAML (duplicate keys included).
        ConfigError: An unknown key (with file:line and the closest valid key), a bad value, an
            output root outside the project.
    """
    try:
        loaded = load_config(path)
    except LaunchError as error:  # the loader's contract: ConfigError, same file:line and fix
        raise ConfigError(
            error.message, path=error.path, line=error.line, field=error.field, fix=error.fix
        ) from None
    data = thaw(loaded.data) if loaded.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(
            "expected a mapping at the top level", path=loaded.path, line=1, fix="write `section: {...}` keys"
        )
    settings = validate_settings(data, loaded.path, loaded.line_of)
    check_output_root(settings["output"]["root"], root_dir, loaded.path, loaded.line_of("output.root"))
    return settings, loaded.sha256


def load_final_training_config(
    root_dir: str | Path,
    config_dir: str | Path | None,
    best_config: Mapping[str, Any],
    experiment_config: Mapping[str, Any],
    train_config: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    *,
    backend: str = "local",
    claim: bool = True,
    git_commit: str | None = None,
    config_path: str | Path | None = None,
    dataset: ResolvedDataset | None = None,
    budget: Mapping[str, Any] | None = None,
    mlflow_defaults: Mapping[str, str] | None = None,
    checkpoint_exists: CheckpointExists = local_checkpoint_exists,
    locate: Locate | None = None,
    backbone_dir: str | Path | None = None,
) -> ResolvedFinalTraining:
    """Load final_training.yaml and resolve one final-training run.

    Args:
        root_dir: Project root (outputs and relative dataset paths live under it).
        config_dir: The configs folder (`root_dir / "configs"`), for data configs and the default
            final_training.yaml; may be None when `config_path` and `dataset` are given.
        best_config: Best configuration from selection (backbone, params, optional `checkpoint`
            of the selected trial).
        experiment_config: Experiment config (`data_config` relative to config_dir, `name`).
        train_config: Training defaults: one config, or every training config in `--config`
            order (merged as LightningCLI merges them); None reads `config_dir / "train.yaml"`.
        backend: Backend name (`local` or `azure`), a level of the output layout.
        claim: Allocate (or take over) the variant now, atomically across processes. False only
            previews the decision and writes nothing.
        git_commit: Commit for the code fingerprint; None asks `NER_GIT_COMMIT`, then git.
        config_path: The final_training.yaml to read (default: `config_dir/final_training.yaml`).
        dataset: The dataset, when the caller knows it (the pipeline's registered asset).
        budget: The pipeline's epoch budget (`{"epochs": N}`), applied before the YAML overrides.
        mlflow_defaults: Default `experiment_name` and `run_name` when the YAML gives none.
        checkpoint_exists: Says whether a reused variant's checkpoint still exists.
        locate: Maps a job-output checkpoint reference to a local file to check, or None.
        backbone_dir: Local folder of this run's backbone (its architecture is compared with a
            starting checkpoint's), or None.

    Returns:
        The resolved, frozen configuration and its decision.

    Raises:
        ConfigError: Invalid YAML content, an unknown key, a bad value, a missing dataset or
            checkpoint, an incompatible starting checkpoint, or a parent still running.
    """
    root_dir = Path(root_dir)
    config_dir = Path(config_dir) if config_dir is not None else root_dir / "configs"
    path = Path(config_path) if config_path is not None else config_dir / FINAL_TRAINING_CONFIG
    if path.is_file():
        settings, sha = read_settings(path, root_dir)
    else:
        warnings.warn(
            f"{path} does not exist; falling back to the deprecated inline final-training configuration "
            "(plan defaults). Create configs/final_training.yaml (see docs/config/final_training.md).",
            DeprecationWarning,
            stacklevel=2,
        )
        settings, sha, path = validate_settings({}), "", None
    if train_config is None and (config_dir / TRAIN_CONFIG).is_file():
        train_config = thaw(load_config(config_dir / TRAIN_CONFIG).data)
    if train_config is not None and not isinstance(train_config, Mapping):
        train_config = merge_configs(train_config)
    if dataset is None:
        dataset = resolve_dataset(root_dir, config_dir, experiment_config, settings["dataset"], path)
    return resolve(
        settings,
        root_dir=root_dir,
        best_config=best_config,
        experiment_config=experiment_config,
        train_config=train_config,
        backend=backend,
        claim=claim,
        git_commit=git_commit,
        config_path=path,
        config_sha256=sha,
        deprecated=path is None,
        dataset=dataset,
        budget=budget,
        mlflow_defaults=mlflow_defaults,
        checkpoint_exists=checkpoint_exists,
        locate=locate,
        backbone_dir=Path(backbone_dir) if backbone_dir else None,
    )


def resolve(
    settings: Mapping[str, Any],
    *,
    root_dir: Path,
    best_config: Mapping[str, Any],
    experiment_config: Mapping[str, Any],
    train_config: Mapping[str, Any] | None,
    backend: str,
    claim: bool,
    git_commit: str | None,
    config_path: Path | None,
    config_sha256: str,
    deprecated: bool,
    dataset: ResolvedDataset,
    seed_fallback: int = DEFAULT_SEED,
    bookkeeping: bool = True,
    budget: Mapping[str, Any] | None = None,
    mlflow_defaults: Mapping[str, str] | None = None,
    checkpoint_exists: CheckpointExists = local_checkpoint_exists,
    locate: Locate | None = None,
    backbone_dir: Path | None = None,
) -> ResolvedFinalTraining:
    """Resolve validated settings into one run (see `load_final_training_config`)."""
    defaults = training_defaults(train_config)
    best = best_config_values(best_config)
    backbone = best.get("backbone") or defaults.get("backbone")
    if not backbone:
        raise ConfigError(
            "no backbone: the best configuration and the training config name none",
            field="backbone",
            fix="pass the selection's best configuration (it carries `backbone`)",
        )
    backbone = portable_backbone(str(backbone), root_dir)
    hyperparameters = merge_hyperparameters(defaults, best, settings["training"], budget)
    if (
        hyperparameters.get("warmup_steps") is not None
        and settings["training"].get("warmup_steps") is not None
    ):
        hyperparameters.pop("warmup_ratio", None)  # the plan's warmup_steps replaces the ratio
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
    use_crf = head_is_crf(hyperparameters.get("head"), hyperparameters.get("use_crf"))
    hyperparameters["use_crf"] = use_crf
    precision = str(defaults.get("precision", "32-true"))
    deterministic = bool(defaults.get("deterministic", False))
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
    base = merge_hyperparameters(defaults, best, {}, budget)
    base["use_crf"] = use_crf
    start: StartingPoint = resolve_starting_point(
        settings,
        store=store,
        root_dir=root_dir,
        best_config=best_config,
        base_spec_fp=spec_of(base, None),
        exec_fp=exec_fp,
        backbone=backbone,
        dataset=dataset,
        crf=use_crf,
        architecture=backbone_architecture(backbone_dir or local_backbone(backbone, root_dir)),
        config_path=config_path,
        locate=locate,
    )
    spec_fp = spec_of(hyperparameters, start.identity)

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
        "init_checkpoint": start.checkpoint,
        "parent": start.parent,
        "config_path": str(config_path) if config_path else None,
        "config_sha256": config_sha256,
    }
    requested = None if mode == "force_new" else settings["variant"]["number"]
    if bookkeeping:
        decision = decide(
            store,
            spec_fp=spec_fp,
            exec_fp=exec_fp,
            mode=mode,
            requested=requested,
            skip_if_complete=settings["output"]["skip_if_complete"],
            claim=claim,
            config_sha256=config_sha256,
            checkpoint_exists=checkpoint_exists,
        )
    else:
        decision = None
    record = decision.record if decision else None
    if record is None:
        if bookkeeping and claim:
            record = open_variant(
                store,
                slug=slug,
                spec_fp=spec_fp,
                exec_fp=exec_fp,
                requested=requested,
                metadata=meta,
                config_path=config_path,
            )
            number, output_dir = record.variant, record.path
        else:
            number = requested or (store.next_variant_number(spec_fp, exec_fp) if bookkeeping else 1)
            output_dir = store.variant_dir(slug, spec_fp, exec_fp, number)
    else:
        number, output_dir = record.variant, record.path
    action = decision.action if decision else "train"

    mlflow, fallback = settings["mlflow"], dict(mlflow_defaults or {})
    experiment = (
        mlflow["experiment_name"]
        or fallback.get("experiment_name")
        or f"{experiment_config.get('name', 'ner')}-{STAGE_FINAL}-{slug}"
    )
    trial = best_config.get("trial_name") or best_config.get("trial_id")
    run_name = (
        mlflow["run_name"]
        or fallback.get("run_name")
        or (f"{slug}_{trial}_v{number}" if trial else f"{slug}_final_v{number}")
    )
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
        init_checkpoint=start.checkpoint,
        checkpoint_resolved_by=start.resolved_by,
        resume_checkpoint=decision.resume_checkpoint if decision else None,
        resume_job=decision.resume_job if decision else None,
        variant=number,
        output_dir=str(output_dir),
        checkpoint=variant_checkpoint(record) if action == "skip" and record is not None else None,
        spec_fp=spec_fp,
        exec_fp=exec_fp,
        parent=frozen_mapping(start.parent) if start.parent else None,
        mlflow_experiment=experiment,
        mlflow_run_name=run_name,
        mlflow_tags=frozen_mapping(tags),
        config_path=str(config_path) if config_path else None,
        config_sha256=config_sha256,
        deprecated=deprecated,
        reason=decision.reason if decision else "",
    )
