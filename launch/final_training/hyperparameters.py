"""Hyperparameter names and the merge order of final training.

Precedence, lowest first: the merged training configs (every `--config` file the job gets, in
order) -> the final-training base of the plan (train + validation, early stopping off) -> the best
configuration from selection -> the pipeline's epoch budget -> non-null `training:` overrides of
final_training.yaml. Canonical names are the keys of `launch.search_space.PARAMETER_ARGUMENTS`,
the one map from config keys to training CLI arguments.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from launch.search_space import PARAMETER_ARGUMENTS

#: Canonical hyperparameter name -> training CLI argument (without dashes).
CLI_ARGUMENTS: dict[str, str] = {
    name: argument.removeprefix("--") for name, argument in PARAMETER_ARGUMENTS.items() if name != "backbone"
}
#: Other spellings accepted in best configurations and training configs.
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
#: Final training trains on train + validation with early stopping off (Phase 1 P1-3.7).
FINAL_TRAINING_BASE = {"combine_train_validation": True, "early_stopping.enabled": False}
#: Values that are not hyperparameters but travel with them.
IDENTITY_KEYS = ("backbone", "seed", "precision", "deterministic")
#: Keys whose value is a mapping passed whole (a head given as `{class_path, init_args}`).
_WHOLE = frozenset({"model.head", "head"})


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in mapping.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and dotted not in _WHOLE:
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = dict(value) if isinstance(value, Mapping) else value
    return flat


def canonical_names(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten and rename to canonical names (`model.learning_rate`/`lr` -> `learning_rate`)."""
    return {ALIASES.get(key, key): value for key, value in _flatten(mapping).items()}


def merge_configs(configs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Deep-merge training configs in order, as LightningCLI reads repeated `--config` files."""

    def merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in overlay.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key != "head":
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = _plain(value)
        return merged

    result: dict[str, Any] = {}
    for config in configs:
        result = merge(result, config or {})
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def training_defaults(train_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Canonical hyperparameters (and backbone/seed/precision/determinism) from a training config.

    Args:
        train_config: A LightningCLI-shaped config (`model:`, `data:`, `trainer:`,
            `early_stopping:`, `seed_everything:`), merged from every file, or a flat mapping.

    Returns:
        Canonical name -> value for the names the training CLI map knows; other keys are dropped.
    """
    known = set(CLI_ARGUMENTS) | set(IDENTITY_KEYS)
    return {key: value for key, value in canonical_names(train_config or {}).items() if key in known}


#: Keys of a selection (launch/selection.py `Selection.to_json`) that are not hyperparameters.
_SELECTION_BOOKKEEPING = frozenset(
    {"dataset", "hyperparameters", "params", "checkpoint", "trial_id", "trial_name", "run_id", "git_commit"}
    | {"metrics", "metric", "value", "dataset_name", "dataset_version", "sweep_id", "criteria", "ranked"}
)


def best_config_values(best_config: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical values of a best configuration from selection (bookkeeping keys left out)."""
    values = {key: value for key, value in best_config.items() if key not in _SELECTION_BOOKKEEPING}
    values.update(best_config.get("hyperparameters") or best_config.get("params") or {})
    return canonical_names(values)


def merge_hyperparameters(
    defaults: Mapping[str, Any],
    best: Mapping[str, Any],
    overrides: Mapping[str, Any],
    budget: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge in precedence order (see the module docstring).

    Args:
        defaults: Canonical values from the merged training configs.
        best: Canonical values from the best configuration.
        overrides: The YAML `training` section (nested, nulls mean "keep").
        budget: The pipeline's budget (`{"epochs": N}`), between the best values and the overrides.

    Returns:
        Canonical name -> value, without backbone/seed/precision/determinism.
    """
    merged: dict[str, Any] = dict(defaults)
    merged.update(FINAL_TRAINING_BASE)
    merged.update(best)
    merged.update({key: value for key, value in (budget or {}).items() if value is not None})
    merged.update({key: value for key, value in _flatten(overrides).items() if value is not None})
    for key in IDENTITY_KEYS:
        merged.pop(key, None)
    for key, value in list(merged.items()):
        if isinstance(value, str) and key in CLI_ARGUMENTS:
            # YAML reads `1e-5` as a string; fingerprints must see the number.
            with contextlib.suppress(ValueError):
                merged[key] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
    return merged


def head_is_crf(head: Any, use_crf: Any) -> bool:
    """Whether the head a run trains is a CRF (`crf`, a CRF class path, or the deprecated use_crf)."""
    if isinstance(head, Mapping):
        head = head.get("class_path")
    if head:
        return "crf" in str(head).rsplit(".", 1)[-1].lower()
    return bool(use_crf)
