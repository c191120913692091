"""Parse and validate `configs/sweep.yaml`: search dimensions, sampling, early termination, limits.

Every sweep parameter maps to one training CLI argument (`PARAMETER_ARGUMENTS`), so a trial's
command line is `... --model.learning_rate ${{search_space.learning_rate}} ...`. Combinations
the Azure ML service rejects but the SDK accepts offline (grid sampling over a continuous
parameter, bayesian sampling with an early-termination policy) are refused here, before any
submission, with the field and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from launch.configs import LoadedConfig, load_config
from launch.jobs import Choice, EarlyTermination, LogUniform, SearchDimension, SweepLimits, Uniform

#: Config key -> the training CLI argument it sets: the one map of sweep parameters and of
#: final_training.yaml `training:` keys. Dotted keys (`early_stopping.enabled`) are not sweepable.
PARAMETER_ARGUMENTS: Mapping[str, str] = MappingProxyType(
    {
        "backbone": "--model.backbone",
        "learning_rate": "--model.learning_rate",
        "dropout": "--model.dropout",
        "head": "--model.head",  # a head name: softmax, crf (ner_lightning.model.heads.HEADS)
        "use_crf": "--model.use_crf",  # deprecated: use head
        "weight_decay": "--model.weight_decay",
        "warmup_ratio": "--model.warmup_ratio",
        "crf_learning_rate": "--model.crf_learning_rate",
        "batch_size": "--data.batch_size",
        "epochs": "--trainer.max_epochs",
        "warmup_steps": "--model.warmup_steps",  # wins over warmup_ratio when set
        "gradient_accumulation_steps": "--trainer.accumulate_grad_batches",
        "max_grad_norm": "--trainer.gradient_clip_val",
        "combine_train_validation": "--data.combine_train_validation",
        "early_stopping.enabled": "--early_stopping.enabled",
        "early_stopping.patience": "--early_stopping.patience",
        "early_stopping.min_delta": "--early_stopping.min_delta",
    }
)
SAMPLING_ALGORITHMS = ("random", "grid", "bayesian")
POLICIES = ("median", "bandit")
DIMENSION_TYPES = ("choice", "uniform", "loguniform")


@dataclass(frozen=True)
class SweepConfig:
    """The validated content of a sweep config.

    Attributes:
        search_space: Parameter name -> dimension.
        sampling_algorithm: `random`, `grid` or `bayesian`.
        limits: Trial budget and timeouts.
        early_termination: Policy, or None.
        seed: Sampler seed (random sampling, and the local Optuna sampler).
        source: The loaded file (its hash tags every sweep job).
    """

    search_space: Mapping[str, SearchDimension]
    sampling_algorithm: str
    limits: SweepLimits
    early_termination: EarlyTermination | None
    seed: int
    source: LoadedConfig


def cli_argument(parameter: str) -> str:
    """The training CLI argument a sweep parameter sets (KeyError for unknown names)."""
    return PARAMETER_ARGUMENTS[parameter]


def format_cli_value(value: object) -> str:
    """A hyperparameter value as the training CLI reads it (booleans as `true`/`false`, mappings as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, default=str)
    return str(value)


def _number(config: LoadedConfig, field: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise config.error(f"{value!r} is not a number", field=field, fix="give a finite number")
    if positive and value <= 0:
        raise config.error(f"{value!r} must be > 0", field=field, fix="give a positive number")
    return float(value)


def _integer(config: LoadedConfig, field: str, value: Any, *, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise config.error(f"{value!r} is not a positive integer", field=field, fix="give an integer >= 1")
    return value


def _dimension(config: LoadedConfig, name: str, raw: Any) -> SearchDimension:
    field = f"search_space.{name}"
    if name not in PARAMETER_ARGUMENTS or "." in name:
        raise config.error(
            f"unknown sweep parameter {name!r}: it maps to no training CLI argument",
            field=field,
            fix=f"use one of {', '.join(sorted(n for n in PARAMETER_ARGUMENTS if '.' not in n))} (launch/search_space.py PARAMETER_ARGUMENTS)",
        )
    if not isinstance(raw, Mapping) or raw.get("type") not in DIMENSION_TYPES:
        raise config.error(
            "a search dimension needs a type",
            field=f"{field}.type",
            fix=f"set type to one of {', '.join(DIMENSION_TYPES)}",
        )
    kind = raw["type"]
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, tuple) or not values:
            raise config.error(
                "a choice needs a non-empty list of values",
                field=f"{field}.values",
                fix="list at least one value",
            )
        if len(set(map(repr, values))) != len(values):
            raise config.error(
                "a choice lists a value twice", field=f"{field}.values", fix="remove duplicates"
            )
        return Choice(values=values)
    positive = kind == "loguniform"
    low = _number(config, f"{field}.min_value", raw.get("min_value"), positive=positive)
    high = _number(config, f"{field}.max_value", raw.get("max_value"), positive=positive)
    if low >= high:
        raise config.error(
            f"min_value {low} is not below max_value {high}",
            field=f"{field}.min_value",
            fix="make min_value < max_value",
        )
    if name == "dropout" and not (low >= 0.0 and high < 1.0):
        raise config.error("dropout bounds must lie in [0, 1)", field=field, fix="use bounds within [0, 1)")
    return LogUniform(low, high) if positive else Uniform(low, high)


def _early_termination(config: LoadedConfig, raw: Any) -> EarlyTermination | None:
    if raw is None or (isinstance(raw, Mapping) and raw.get("policy") in (None, "none")):
        return None
    field = "early_termination"
    if not isinstance(raw, Mapping) or raw.get("policy") not in POLICIES:
        raise config.error(
            "unknown early-termination policy",
            field=f"{field}.policy",
            fix=f"use one of {', '.join(POLICIES)} or none",
        )
    slack = raw.get("slack_factor", 0.1)
    if raw["policy"] == "bandit":
        slack = _number(config, f"{field}.slack_factor", slack, positive=True)
    return EarlyTermination(
        policy=raw["policy"],
        evaluation_interval=_integer(
            config, f"{field}.evaluation_interval", raw.get("evaluation_interval", 1)
        ),
        delay_evaluation=_integer(config, f"{field}.delay_evaluation", raw.get("delay_evaluation", 1)),
        slack_factor=float(slack),
    )


def _limits(config: LoadedConfig, raw: Any) -> SweepLimits:
    if not isinstance(raw, Mapping):
        raise config.error("limits are missing", field="limits", fix="set limits.max_total_trials at least")
    total = _integer(config, "limits.max_total_trials", raw.get("max_total_trials"))
    concurrent = _integer(config, "limits.max_concurrent_trials", raw.get("max_concurrent_trials", 1))
    if concurrent > total:
        raise config.error(
            f"max_concurrent_trials {concurrent} exceeds max_total_trials {total}",
            field="limits.max_concurrent_trials",
            fix="lower max_concurrent_trials or raise max_total_trials",
        )
    return SweepLimits(
        max_total_trials=total,
        max_concurrent_trials=concurrent,
        timeout_s=_integer(config, "limits.timeout_s", raw.get("timeout_s"), optional=True),
        trial_timeout_s=_integer(config, "limits.trial_timeout_s", raw.get("trial_timeout_s"), optional=True),
    )


def parse_sweep_config(config: LoadedConfig) -> SweepConfig:
    """Validate a loaded sweep config and turn it into search dimensions, algorithm and limits.

    Args:
        config: The loaded `configs/sweep.yaml`.

    Returns:
        The validated sweep description.

    Raises:
        LaunchError: Naming the file, line and field, and the fix, for: an unknown parameter, an
            empty choice, bad bounds, an unknown algorithm or policy, grid sampling over a
            non-choice parameter, bayesian sampling with an early-termination policy, bad limits.
    """
    if not isinstance(config.data, Mapping):
        raise config.error(
            "a sweep config must be a mapping", field="search_space", fix="see configs/sweep.yaml"
        )
    raw_space = config.data.get("search_space")
    if not isinstance(raw_space, Mapping) or not raw_space:
        raise config.error(
            "the search space is empty",
            field="search_space",
            fix="list at least one parameter under search_space",
        )
    space = {name: _dimension(config, name, raw) for name, raw in raw_space.items()}

    algorithm = config.data.get("sampling_algorithm", "random")
    if algorithm not in SAMPLING_ALGORITHMS:
        raise config.error(
            f"unknown sampling algorithm {algorithm!r}",
            field="sampling_algorithm",
            fix=f"use one of {', '.join(SAMPLING_ALGORITHMS)}",
        )
    if algorithm == "grid":
        continuous = sorted(name for name, dim in space.items() if not isinstance(dim, Choice))
        if continuous:
            raise config.error(
                f"grid sampling needs choice parameters only; {', '.join(continuous)} are continuous",
                field=f"search_space.{continuous[0]}",
                fix="turn them into type: choice, or use sampling_algorithm: random",
            )
    early = _early_termination(config, config.data.get("early_termination"))
    if algorithm == "bayesian" and early is not None:
        raise config.error(
            "bayesian sampling does not support an early-termination policy (the service rejects it)",
            field="early_termination.policy",
            fix="set early_termination.policy: none, or use sampling_algorithm: random",
        )
    seed = config.data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise config.error(f"seed {seed!r} is not an integer >= 0", field="seed", fix="give an integer seed")
    return SweepConfig(
        search_space=MappingProxyType(space),
        sampling_algorithm=algorithm,
        limits=_limits(config, config.data.get("limits")),
        early_termination=early,
        seed=seed,
        source=config,
    )


def load_sweep_config(path: str | Path) -> SweepConfig:
    """Load and validate a sweep config file (see `parse_sweep_config`)."""
    return parse_sweep_config(load_config(path))
