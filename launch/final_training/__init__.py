"""Final training: `configs/final_training.yaml` resolved into the one object the final job is built from.

- `resolver`: `load_final_training_config` (YAML -> settings -> merged hyperparameters,
  fingerprints, starting checkpoint, run-mode decision);
- `hyperparameters`: names and merge order; `dataset`: the dataset; `starting_point`: the
  checkpoint a new variant starts from; `decision`: the run modes over the variant store and the
  variant's bookkeeping; `command`: the job built from the resolved object; `compat`: the plan's
  deprecated `build_final_training_config`.
"""

from launch.final_training.command import argument_pairs, final_job
from launch.final_training.compat import build_final_training_config
from launch.final_training.dataset import resolve_dataset
from launch.final_training.decision import mark_variant_complete, mark_variant_failed, mark_variant_running
from launch.final_training.hyperparameters import (
    ALIASES,
    CLI_ARGUMENTS,
    FINAL_TRAINING_BASE,
    best_config_values,
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
from launch.final_training.resolver import (
    DEFAULT_SEED,
    FINAL_TRAINING_CONFIG,
    TRAIN_CONFIG,
    load_final_training_config,
    read_settings,
)
from launch.fingerprints import fingerprint

__all__ = [
    "ALIASES",
    "CLI_ARGUMENTS",
    "DEFAULT_SEED",
    "FINAL_TRAINING_BASE",
    "FINAL_TRAINING_CONFIG",
    "TAG_EXEC_FP",
    "TAG_SPEC_FP",
    "TAG_VARIANT",
    "TRAIN_CONFIG",
    "ResolvedDataset",
    "ResolvedFinalTraining",
    "argument_pairs",
    "best_config_values",
    "build_final_training_config",
    "final_job",
    "fingerprint",
    "load_final_training_config",
    "mark_variant_complete",
    "mark_variant_failed",
    "mark_variant_running",
    "merge_configs",
    "merge_hyperparameters",
    "read_settings",
    "resolve_dataset",
    "training_defaults",
]
