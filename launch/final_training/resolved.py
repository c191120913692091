"""The resolved shape of one final-training run: what the job trains, where, and why.

`ResolvedFinalTraining` is the only source of the final job (`launch/final_training/command.py`
turns it into the command line). It also reads like the dict that the plan's deprecated
`build_final_training_config()` returned (`cfg["learning_rate"]`), with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from launch.final_training_schema import RunMode, SourceType
from launch.jobs import frozen_mapping

Action = Literal["train", "skip", "resume"]

#: MLflow tag names of the variant bookkeeping (also on Azure runs, so any machine can find them).
TAG_SPEC_FP = "spec_fp"
TAG_EXEC_FP = "exec_fp"
TAG_VARIANT = "final_variant"


@dataclass(frozen=True)
class ResolvedDataset:
    """The dataset version a final run trains on.

    Attributes:
        name: Dataset (asset) name.
        version: Dataset version.
        fingerprint: Content fingerprint (sha256 of the split files).
        local_path: Local dataset folder (labels and fingerprint were read from it).
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
class ResolvedFinalTraining(Mapping[str, Any]):
    """Everything the final-training job is built from, fully resolved and frozen.

    Attributes:
        action: `train` (a new or taken-over variant), `skip` (a complete variant is reused) or
            `resume` (continue an interrupted variant).
        run_mode: The run mode that produced the decision.
        source_type: `scratch`, `hpo_best` or `final_training`.
        backend: Backend name (`local`, `azure`): a folder level of the output layout.
        backbone: Backbone reference as written in configs (or the registered asset id).
        hyperparameters: Merged values, canonical names (keys of `PARAMETER_ARGUMENTS`).
        seed: Random seed (`--seed_everything`).
        use_crf: CRF head on/off.
        precision: Lightning precision.
        deterministic: Deterministic algorithms on/off.
        dataset: The resolved dataset.
        init_checkpoint: Checkpoint whose weights initialise a new variant, or None.
        checkpoint_resolved_by: How it was found (`explicit`, `fingerprints`, `index`, `metadata`,
            `cache`, `hpo_best`), or None.
        resume_checkpoint: Local `last.ckpt` to resume from (action `resume`), or None.
        resume_job: Job whose output holds the interrupted attempt's checkpoints, or None.
        variant: Variant number.
        output_dir: The variant folder (holds metadata.json).
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
        reason: Why this decision (for example why a complete variant was not reused).
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
    resume_job: str | None = None
    reason: str = ""

    def training_arguments(self) -> tuple[str, ...]:
        """Command-line overrides for `python -m ner_lightning fit` (without data and output dir).

        The same arguments the pipeline's job gets (`launch.final_training.command`).
        """
        from launch.final_training.command import argument_pairs

        return tuple(f"{argument}={value}" for argument, value in argument_pairs(self))

    # --- the plan's dict view (deprecated) ------------------------------------------------
    def legacy_view(self) -> dict[str, Any]:
        """The keys `build_final_training_config()` returned, as a plain dict (no warning)."""
        values: dict[str, Any] = {
            "backbone": self.backbone,
            "random_seed": self.seed,
            "seed": self.seed,
            "use_crf": self.use_crf,
            "precision": self.precision,
            "deterministic": self.deterministic,
            "dataset_name": self.dataset.name,
            "dataset_version": self.dataset.version,
            "dataset_path": self.dataset.local_path,
            "variant": self.variant,
            "spec_fp": self.spec_fp,
            "exec_fp": self.exec_fp,
            "output_dir": self.output_dir,
            "checkpoint_path": self.init_checkpoint,
            "experiment_name": self.mlflow_experiment,
            "run_name": self.mlflow_run_name,
        }
        early = {}
        for key, value in self.hyperparameters.items():
            if key.startswith("early_stopping."):
                early[key.split(".", 1)[1]] = value
            else:
                values[key] = value
        values["early_stopping"] = early
        return values

    def __getitem__(self, key: str) -> Any:
        warnings.warn(
            f"resolved[{key!r}] (the dict of the deprecated build_final_training_config) is deprecated; "
            "read the attributes (resolved.hyperparameters, resolved.backbone, resolved.seed)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.legacy_view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.legacy_view())

    def __len__(self) -> int:
        return len(self.legacy_view())

    __hash__ = object.__hash__  # Mapping leaves it unset; identity is enough for a frozen record
