"""The plan's deprecated inline path, kept for older notebooks."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launch.final_training.dataset import dataset_labels
from launch.final_training.resolved import ResolvedDataset, ResolvedFinalTraining
from launch.final_training.resolver import DEFAULT_SEED, resolve
from launch.final_training_schema import validate_settings
from launch.fingerprints import dataset_fingerprint


def build_final_training_config(
    best_config: Mapping[str, Any], train_config: Mapping[str, Any], random_seed: int = DEFAULT_SEED
) -> ResolvedFinalTraining:
    """Deprecated: resolve a final run from the best and training configs alone (no YAML, no bookkeeping).

    It applies the plan's defaults, takes the dataset from `best_config["dataset"]` (`name`,
    `version`, `fingerprint`, `local_path`), never touches the output folders (variant 1, action
    `train`) and warns. The result also reads like the dict the function used to return
    (`cfg["learning_rate"]`, with a DeprecationWarning). Use `load_final_training_config`.

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
        labels = dataset_labels(Path(local))
    dataset = ResolvedDataset(
        name=str(facts.get("name") or best_config.get("dataset_name") or "unknown"),
        version=str(facts.get("version") or best_config.get("dataset_version") or "unknown"),
        fingerprint=str(facts.get("fingerprint") or (dataset_fingerprint(Path(local)) if local else "")),
        local_path=local,
        labels=tuple(facts.get("labels") or labels),
    )
    return resolve(
        validate_settings({}),
        root_dir=Path.cwd(),
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
