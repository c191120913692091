"""Schema of `configs/final_training.yaml`: allowed keys, the plan's defaults, and validation.

`validate_settings` checks a parsed final_training.yaml against `SCHEMA` and fills in `DEFAULTS`;
an unknown key names the closest valid one, and every error names the file, line and field.
The file itself is read by the launcher's one YAML loader (`launch.configs.load_config`: sha256,
duplicate keys refused, `line_of` for messages); `launch/final_training/` resolves the validated
settings into one run.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ner_lightning.errors import ConfigError

DEFAULT_OUTPUT_ROOT = "outputs/final_training"

RunMode = Literal["reuse_if_exists", "force_new", "resume_if_incomplete", "continue_from_previous"]
SourceType = Literal["scratch", "hpo_best", "final_training"]
#: Where an error points: dotted key -> line, or a function giving it (`LoadedConfig.line_of`).
Lines = Mapping[str, int] | Callable[[str], "int | None"]
RUN_MODES = ("reuse_if_exists", "force_new", "resume_if_incomplete", "continue_from_previous")
SOURCE_TYPES = ("scratch", "hpo_best", "final_training")

# --- Schema -------------------------------------------------------------------------------------
# A leaf is a validator name; a dict is a section. Every key of the YAML must appear here.
_FP_REF = {"spec_fp": "str", "exec_fp": "str", "variant": "opt_variant"}
SCHEMA: dict[str, Any] = {
    "run": {"mode": "run_mode"},
    "source": {"type": "source_type", "parent": "ref"},
    "dataset": {"data_config": "opt_str", "local_path_override": "opt_str"},
    # `load_from_checkpoint` is the plan's spelling of `load`.
    "checkpoint": {
        "load": "opt_bool",
        "load_from_checkpoint": "opt_bool",
        "source": "ref",
        "validate": "bool",
    },
    "variant": {"number": "opt_variant"},
    "identity": {"include_code_fp": "bool", "include_precision_fp": "bool", "include_determinism_fp": "bool"},
    "seed": {"random_seed": "opt_seed"},
    "training": {
        "learning_rate": "opt_pos_float",
        "epochs": "opt_pos_int",
        "batch_size": "opt_pos_int",
        "dropout": "opt_prob",
        "weight_decay": "opt_nonneg_float",
        "gradient_accumulation_steps": "opt_pos_int",
        "warmup_ratio": "opt_prob",
        "warmup_steps": "opt_nonneg_int",
        "max_grad_norm": "opt_pos_float",
        "use_crf": "opt_bool",
        "combine_train_validation": "opt_bool",
        "early_stopping": {"enabled": "opt_bool", "patience": "opt_pos_int", "min_delta": "opt_nonneg_float"},
    },
    "output": {"skip_if_complete": "bool", "root": "str"},
    "mlflow": {"experiment_name": "opt_str", "run_name": "opt_str", "tags": "tags"},
}

#: The plan's defaults; an absent key takes its value from here.
DEFAULTS: dict[str, Any] = {
    "run": {"mode": "reuse_if_exists"},
    "source": {"type": "hpo_best", "parent": None},
    "dataset": {"data_config": None, "local_path_override": None},
    "checkpoint": {"load": False, "load_from_checkpoint": None, "source": None, "validate": True},
    "variant": {"number": None},
    "identity": {"include_code_fp": True, "include_precision_fp": True, "include_determinism_fp": False},
    "seed": {"random_seed": None},
    "training": {
        "learning_rate": None,
        "epochs": None,
        "batch_size": None,
        "dropout": None,
        "weight_decay": None,
        "gradient_accumulation_steps": None,
        "warmup_ratio": None,
        "warmup_steps": None,
        "max_grad_norm": None,
        "use_crf": None,
        "combine_train_validation": None,
        "early_stopping": {"enabled": None, "patience": None, "min_delta": None},
    },
    "output": {"skip_if_complete": True, "root": DEFAULT_OUTPUT_ROOT},
    "mlflow": {"experiment_name": None, "run_name": None, "tags": {}},
}


# --- Validation -----------------------------------------------------------------------------
class _Validator:
    """Checks a final-training settings mapping against SCHEMA, naming file, line and field."""

    def __init__(self, path: Path | None, lines: Lines) -> None:
        self.path = path
        self.line_of: Callable[[str], int | None] = lines if callable(lines) else lines.get

    def error(self, field_name: str, message: str, fix: str) -> ConfigError:
        line = self.line_of(field_name)
        if line is None:  # point at the closest enclosing key we know the line of
            parent = field_name
            while "." in parent and line is None:
                parent = parent.rsplit(".", 1)[0]
                line = self.line_of(parent)
        return ConfigError(message, path=self.path, line=line, field=field_name, fix=fix)

    def unknown_key(self, dotted: str, key: str, valid: Sequence[str]) -> ConfigError:
        close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return self.error(
            dotted, f"unknown key {key!r}", f"{hint}valid keys here: {', '.join(sorted(valid))}"
        )

    def section(self, data: Any, schema: Mapping[str, Any], defaults: Mapping[str, Any], prefix: str) -> dict:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self.error(
                prefix,
                f"expected a mapping, got {type(data).__name__}",
                "write the section as `key: value` lines",
            )
        for key in data:
            if key not in schema:
                raise self.unknown_key(f"{prefix}.{key}" if prefix else str(key), str(key), list(schema))
        result = {}
        for key, rule in schema.items():
            dotted = f"{prefix}.{key}" if prefix else key
            value = data.get(key, defaults.get(key))
            if isinstance(rule, dict):
                result[key] = self.section(value, rule, defaults.get(key, {}), dotted)
            else:
                result[key] = self.leaf(value, rule, dotted)
        return result

    def leaf(self, value: Any, rule: str, dotted: str) -> Any:
        optional = rule.startswith("opt_")
        kind = rule.removeprefix("opt_")
        if value is None:
            if optional or kind == "ref":
                return None
            raise self.error(dotted, "a value is required", "give a value (null is not allowed here)")
        if kind == "run_mode":
            return self._choice(value, RUN_MODES, dotted, "run mode")
        if kind == "source_type":
            return self._choice(value, SOURCE_TYPES, dotted, "source type")
        if kind in ("bool",):
            if not isinstance(value, bool):
                raise self.error(dotted, f"expected true or false, got {value!r}", "write true or false")
            return value
        if kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise self.error(dotted, f"expected a non-empty string, got {value!r}", "write a string")
            return value
        if kind in ("variant", "seed", "pos_int", "nonneg_int"):
            return self._integer(value, kind, dotted)
        if kind in ("pos_float", "nonneg_float", "prob"):
            return self._number(value, kind, dotted)
        if kind == "tags":
            if not isinstance(value, Mapping) or not all(
                isinstance(v, (str, int, float, bool)) for v in value.values()
            ):
                raise self.error(
                    dotted, "expected a mapping of tag name -> scalar", "write `tags: {team: nlp}`"
                )
            return {str(k): str(v) for k, v in value.items()}
        if kind == "ref":
            return self._reference(value, dotted)
        raise AssertionError(f"unknown rule {rule}")  # pragma: no cover - schema bug

    def _choice(self, value: Any, allowed: Sequence[str], dotted: str, what: str) -> str:
        if value not in allowed:
            close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self.error(dotted, f"unknown {what} {value!r}", f"{hint}allowed: {', '.join(allowed)}")
        return value

    def _integer(self, value: Any, kind: str, dotted: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and kind != "seed":
                value = int(value)
            else:
                raise self.error(
                    dotted, f"expected an integer, got {value!r}", "write a whole number such as 42"
                )
        if kind == "variant" and value < 1:
            raise self.error(
                dotted, f"variant numbers start at 1, got {value}", "write null (automatic) or a number >= 1"
            )
        if kind == "pos_int" and value < 1:
            raise self.error(dotted, f"must be >= 1, got {value}", "write a number >= 1 or null")
        if kind == "nonneg_int" and value < 0:
            raise self.error(dotted, f"must be >= 0, got {value}", "write a number >= 0 or null")
        return value

    def _number(self, value: Any, kind: str, dotted: str) -> float:
        # YAML 1.1 reads `1e-5` (no dot) as a string; accept number spellings as numbers.
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(
                dotted, f"expected a number, got {value!r}", "write a number such as 1e-5 or null"
            )
        value = float(value)
        if kind == "pos_float" and not value > 0:
            raise self.error(dotted, f"must be > 0, got {value}", "write a positive number or null")
        if kind == "nonneg_float" and not value >= 0:
            raise self.error(dotted, f"must be >= 0, got {value}", "write a number >= 0 or null")
        if kind == "prob" and not 0 <= value < 1:
            raise self.error(
                dotted, f"must be in [0, 1), got {value}", "write a probability such as 0.1 or null"
            )
        return value

    def _reference(self, value: Any, dotted: str) -> str | dict[str, Any]:
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, Mapping):
            ref = self.section(value, _FP_REF, {}, dotted)
            missing = [key for key in ("spec_fp", "exec_fp") if not ref.get(key)]
            if missing:
                raise self.error(
                    dotted, f"missing {', '.join(missing)}", "write {spec_fp: ..., exec_fp: ..., variant: N}"
                )
            return ref
        raise self.error(
            dotted,
            f"expected null, a path or {{spec_fp, exec_fp, variant}}, got {value!r}",
            "write null, a checkpoint path, or {spec_fp: ..., exec_fp: ..., variant: 1}",
        )


def validate_settings(
    data: Mapping[str, Any], path: Path | None = None, lines: Lines | None = None
) -> dict[str, Any]:
    """Validate a final_training.yaml mapping and fill in the plan's defaults.

    Args:
        data: The parsed YAML.
        path: File the mapping came from (for error messages).
        lines: Dotted key -> line number, or `LoadedConfig.line_of` (for error messages).

    Returns:
        The complete settings (every section and key present).

    Raises:
        ConfigError: An unknown key (with the closest valid one), a wrong type or value, or an
            inconsistent combination (`continue_from_previous` without a final-training source,
            `checkpoint.load: true` with `source.type: scratch`).
    """
    checker = _Validator(path, lines or {})
    settings = checker.section(data, SCHEMA, DEFAULTS, "")
    mode, source = settings["run"]["mode"], settings["source"]["type"]
    if mode == "continue_from_previous" and source != "final_training":
        raise checker.error(
            "run.mode",
            f"run mode 'continue_from_previous' needs source.type 'final_training', got {source!r}",
            "set source.type: final_training (and optionally source.parent), or choose another run mode",
        )
    alias = settings["checkpoint"].pop("load_from_checkpoint")
    raw_checkpoint = data.get("checkpoint") or {}
    if alias is not None:
        if raw_checkpoint.get("load") is not None and raw_checkpoint["load"] != alias:
            raise checker.error(
                "checkpoint.load_from_checkpoint",
                "checkpoint.load and checkpoint.load_from_checkpoint (the plan's name of the same switch) disagree",
                "keep one of them",
            )
        settings["checkpoint"]["load"] = alias
    load = settings["checkpoint"]["load"]
    if source == "scratch" and load:
        raise checker.error(
            "checkpoint.load",
            "source.type 'scratch' never loads a checkpoint",
            "set checkpoint.load: false, or source.type: hpo_best / final_training",
        )
    if source == "final_training" and load is False and ("load" in raw_checkpoint or alias is not None):
        raise checker.error(
            "checkpoint.load",
            "source.type 'final_training' initialises from the parent run's checkpoint",
            "set checkpoint.load: true (or remove it), or use source.type: hpo_best to start from the backbone",
        )
    if source != "final_training" and settings["source"]["parent"] is not None:
        raise checker.error(
            "source.parent",
            "source.parent is only used with source.type 'final_training'",
            "remove it or set source.type",
        )
    return settings


__all__ = [
    "DEFAULTS",
    "DEFAULT_OUTPUT_ROOT",
    "RUN_MODES",
    "SCHEMA",
    "SOURCE_TYPES",
    "RunMode",
    "SourceType",
    "validate_settings",
]
