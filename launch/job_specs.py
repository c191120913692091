"""Pure builders: loaded configs and plain values in, backend-neutral job specs out.

Nothing here submits, reads the network or touches the file system beyond what the caller
already loaded. Each backend turns the specs into something that runs (`launch/azure/entities.py`
into azure-ai-ml entities, `launch/local/` into subprocesses), so the training command line of
every stage is written once, here, following docs/architecture.md:

    python -m ner_lightning fit --config ${{inputs.train_config}} [--config ${{inputs.overlay_N}}]
      --data.data_dir ${{inputs.data}} --output_dir ${{outputs.model}} [stage arguments]
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from launch.configs import LoadedConfig, config_file_input, config_hash_tags, config_hashes_json, load_config
from launch.errors import LaunchError
from launch.jobs import (
    AssetRef,
    CommandJobSpec,
    Distribution,
    JobInput,
    SweepJobSpec,
    frozen_mapping,
)
from launch.search_space import PARAMETER_ARGUMENTS, SweepConfig, format_cli_value
from ner_lightning.contract import (
    ENV_CONFIG_HASHES,
    ENV_DATASET_FINGERPRINT,
    ENV_GIT_COMMIT,
    STAGE_CONVERSION,
    STAGE_DRY_RUN,
    STAGE_FINAL,
    STAGE_SWEEP,
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_GIT_COMMIT,
    TAG_PRODUCTION_ELIGIBLE,
    TAG_STAGE,
)

#: Input and output names used in every command line.
DATA_INPUT = "data"
TRAIN_CONFIG_INPUT = "train_config"
OVERLAY_INPUT_PREFIX = "overlay_"
MODEL_OUTPUT = "model"
MODEL_INPUT = "model"
#: Input carrying a registered backbone folder to every training job (`--model.backbone`).
BACKBONE_INPUT = "backbone"
#: Extra tags on every job: environment name and version.
TAG_ENVIRONMENT_NAME = "environment_name"
TAG_ENVIRONMENT_VERSION = "environment_version"
#: Prefix of the tags that record a final training job's selected hyperparameters.
TAG_HYPERPARAMETER_PREFIX = "hp."


@dataclass(frozen=True)
class JobContext:
    """What every job of one pipeline run shares.

    Attributes:
        experiment_name: Experiment (MLflow experiment) the jobs are filed under.
        dataset: Registered dataset version (with its content fingerprint).
        environment: Registered environment version.
        git_commit: Commit of the code the jobs run (passed as `NER_GIT_COMMIT`).
        train_configs: Training configs, passed in order as `--config` (first the base config,
            then overlays); each reaches the job verbatim as a `uri_file` input.
        tracked_configs: Other configs that shaped the jobs (sweep.yaml, compute.yaml...): hashed
            into tags, not passed to the training CLI.
        display_prefix: Prefix of every display name (for example the pipeline run's name).
        backbone: Registered backbone folder passed to every training job as the input `backbone`
            (`--model.backbone ${{inputs.backbone}}`), or None when the configs name a loadable one.
        final_configs: Configs only final training and what follows depend on (sweep.yaml through
            the selection, final_training.yaml): hashed into the final and conversion jobs' tags.
    """

    experiment_name: str
    dataset: AssetRef
    environment: AssetRef
    git_commit: str
    train_configs: tuple[LoadedConfig, ...]
    tracked_configs: tuple[LoadedConfig, ...] = field(default_factory=tuple)
    display_prefix: str = ""
    backbone: AssetRef | None = None
    final_configs: tuple[LoadedConfig, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.train_configs:
            raise LaunchError(
                "no training config given",
                field="train_configs",
                fix="pass the base training config (configs/*.yaml)",
            )

    def config_tags(self, *, final: bool = False) -> dict[str, str]:
        """`config_sha256.<file>` tags of every config a job depends on (`final`: final training and after)."""
        configs = (*self.train_configs, *self.tracked_configs, *(self.final_configs if final else ()))
        return config_hash_tags(configs)


def _config_inputs(ctx: JobContext) -> dict[str, JobInput]:
    inputs = {TRAIN_CONFIG_INPUT: config_file_input(ctx.train_configs[0])}
    for index, overlay in enumerate(ctx.train_configs[1:], 1):
        inputs[f"{OVERLAY_INPUT_PREFIX}{index}"] = config_file_input(overlay)
    return inputs


def _base_tags(ctx: JobContext, stage: str, production_eligible: bool) -> dict[str, str]:
    tags = ctx.config_tags(final=stage in (STAGE_FINAL, STAGE_CONVERSION))
    tags.update(
        {
            TAG_STAGE: stage,
            TAG_PRODUCTION_ELIGIBLE: "true" if production_eligible else "false",
            TAG_DATASET_NAME: ctx.dataset.name,
            TAG_DATASET_VERSION: ctx.dataset.version,
            TAG_DATASET_FINGERPRINT: ctx.dataset.fingerprint,
            TAG_ENVIRONMENT_NAME: ctx.environment.name,
            TAG_ENVIRONMENT_VERSION: ctx.environment.version,
            TAG_GIT_COMMIT: ctx.git_commit,
        }
    )
    return tags


def azure_config_files(config_dir: Path | None, backend: str) -> tuple[LoadedConfig, ...]:
    """The `configs/azure/*.yaml` files a backend uses (hashed into every job's tags).

    Both backends provision the clusters of `compute.yaml`; the Azure backend also reads
    `workspace.yaml`.
    """
    if config_dir is None:
        return ()
    names = ("compute.yaml", "workspace.yaml") if backend == "azure" else ("compute.yaml",)
    return tuple(load_config(config_dir / name) for name in names if (config_dir / name).is_file())


def _env_vars(ctx: JobContext) -> dict[str, str]:
    return {
        ENV_GIT_COMMIT: ctx.git_commit,
        ENV_CONFIG_HASHES: config_hashes_json(ctx.train_configs),
        ENV_DATASET_FINGERPRINT: ctx.dataset.fingerprint,
    }


def training_command(ctx: JobContext, extra: Sequence[str] = ()) -> str:
    """The training command line with config, data and output placeholders, plus `extra` arguments."""
    parts = ["python -m ner_lightning fit", f"--config ${{{{inputs.{TRAIN_CONFIG_INPUT}}}}}"]
    parts += [f"--config ${{{{inputs.{OVERLAY_INPUT_PREFIX}{i}}}}}" for i in range(1, len(ctx.train_configs))]
    parts += [
        f"--data.data_dir ${{{{inputs.{DATA_INPUT}}}}}",
        f"--output_dir ${{{{outputs.{MODEL_OUTPUT}}}}}",
    ]
    if ctx.backbone is not None and not any("--model.backbone" in part for part in extra):
        parts.append(f"--model.backbone ${{{{inputs.{BACKBONE_INPUT}}}}}")
    return " ".join([*parts, *extra])


def _distribution_args(distribution: Distribution | None) -> list[str]:
    if distribution is None:
        return []
    if distribution.instance_count < 1 or distribution.process_count_per_instance < 1:
        raise LaunchError(
            f"invalid distribution {distribution}",
            field="distribution",
            fix="instance_count and process_count_per_instance must be >= 1",
        )
    # Lightning must see the same world as the launcher: one process per device on every node.
    return [
        f"--trainer.num_nodes {distribution.instance_count}",
        f"--trainer.devices {distribution.process_count_per_instance}",
    ]


def _command_spec(
    ctx: JobContext,
    *,
    name: str,
    stage: str,
    command: str,
    production_eligible: bool,
    distribution: Distribution | None = None,
    timeout_s: int | None = None,
    extra_tags: Mapping[str, str] | None = None,
) -> CommandJobSpec:
    tags = _base_tags(ctx, stage, production_eligible)
    tags.update(extra_tags or {})
    inputs = {**_config_inputs(ctx), DATA_INPUT: JobInput(type="uri_folder", value=ctx.dataset)}
    if ctx.backbone is not None and f"${{{{inputs.{BACKBONE_INPUT}}}}}" in command:
        inputs[BACKBONE_INPUT] = JobInput(type="uri_folder", value=ctx.backbone)
    return CommandJobSpec(
        name=name,
        stage=stage,
        command=command,
        inputs=frozen_mapping(inputs),
        outputs=(MODEL_OUTPUT,),
        compute="gpu",
        environment=ctx.environment,
        experiment_name=ctx.experiment_name,
        display_name=f"{ctx.display_prefix}{name}",
        tags=frozen_mapping(tags),
        env_vars=frozen_mapping(_env_vars(ctx)),
        distribution=distribution,
        timeout_s=timeout_s,
    )


def build_dry_run(ctx: JobContext, *, limit_batches: int = 2, timeout_s: int | None = 3600) -> CommandJobSpec:
    """The dry run: one epoch over a few batches on one GPU node; never production-eligible.

    Args:
        ctx: Shared job context.
        limit_batches: Train and validation batches to run (`--trainer.limit_*_batches`).
        timeout_s: Wall-clock limit of the job.
    """
    if limit_batches < 1:
        raise LaunchError(f"limit_batches={limit_batches}", field="limit_batches", fix="use an integer >= 1")
    command = training_command(
        ctx,
        [
            "--trainer.max_epochs 1",
            f"--trainer.limit_train_batches {limit_batches}",
            f"--trainer.limit_val_batches {limit_batches}",
        ],
    )
    return _command_spec(
        ctx,
        name=STAGE_DRY_RUN,
        stage=STAGE_DRY_RUN,
        command=command,
        production_eligible=False,
        timeout_s=timeout_s,
    )


def build_sweep(
    ctx: JobContext, sweep: SweepConfig, *, distribution: Distribution | None = None
) -> SweepJobSpec:
    """The sweep: a trial command naming every dimension as `${{search_space.X}}`, objective val_f1.

    Args:
        ctx: Shared job context (the sweep config is added to its tracked configs).
        sweep: Validated sweep config.
        distribution: Multi-node settings of each trial, or None.
    """
    extra = [f"{PARAMETER_ARGUMENTS[name]} ${{{{search_space.{name}}}}}" for name in sweep.search_space]
    ctx = replace(ctx, tracked_configs=(*ctx.tracked_configs, sweep.source))
    trial = _command_spec(
        ctx,
        name=STAGE_SWEEP,
        stage=STAGE_SWEEP,
        command=training_command(ctx, [*_distribution_args(distribution), *extra]),
        production_eligible=False,
        distribution=distribution,
        timeout_s=sweep.limits.trial_timeout_s,
    )
    return SweepJobSpec(
        trial=trial,
        search_space=sweep.search_space,
        sampling_algorithm=sweep.sampling_algorithm,  # type: ignore[arg-type]
        limits=sweep.limits,
        early_termination=sweep.early_termination,
        seed=sweep.seed,
    )


def final_arguments(values: Mapping[str, object], *, seed: int) -> list[tuple[str, str]]:
    """Training CLI `(argument, value)` pairs of final-training values: the one use of the map.

    Args:
        values: Canonical name -> value (keys of `PARAMETER_ARGUMENTS`); None values are left out.
        seed: `--seed_everything` value.

    Raises:
        LaunchError: A name maps to no training CLI argument, or the seed is invalid.
    """
    unknown = sorted(set(values) - set(PARAMETER_ARGUMENTS))
    if unknown:
        raise LaunchError(
            f"unknown hyperparameter(s) {', '.join(unknown)}",
            field="hyperparameters",
            fix=f"use names from {', '.join(sorted(PARAMETER_ARGUMENTS))}",
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LaunchError(
            f"seed {seed!r} is not an integer >= 0", field="seed", fix="give a fixed integer seed"
        )
    order = list(PARAMETER_ARGUMENTS)
    pairs = [
        (PARAMETER_ARGUMENTS[key], format_cli_value(value))
        for key, value in sorted(values.items(), key=lambda item: order.index(item[0]))
        if value is not None
    ]
    return [*pairs, ("--seed_everything", str(seed))]


def build_final_training(
    ctx: JobContext,
    hyperparameters: Mapping[str, object],
    *,
    seed: int,
    epochs: int | None = None,
    distribution: Distribution | None = None,
    timeout_s: int | None = None,
    name: str = STAGE_FINAL,
    extra_args: Sequence[str] = (),
) -> CommandJobSpec:
    """The final training job: the given values on train+validation, fixed seed, no early stop.

    The pipeline builds it from the resolved final-training object
    (`launch.final_training.command.final_job`), whose values always name the train+validation
    merge and early stopping; here they default to the plan's (merged, off) when absent.

    Args:
        ctx: Shared job context.
        hyperparameters: Canonical name -> value (names from `PARAMETER_ARGUMENTS`).
        seed: `--seed_everything` value.
        epochs: Full epoch budget; overrides `hyperparameters["epochs"]` when given.
        distribution: Multi-node settings, or None.
        timeout_s: Wall-clock limit, or None.
        name: Step name (and display name suffix).
        extra_args: Further training CLI arguments appended verbatim (the starting checkpoint).

    Raises:
        LaunchError: A hyperparameter name maps to no training CLI argument, or the seed is invalid.
    """
    values = {"combine_train_validation": True, "early_stopping.enabled": False, **hyperparameters}
    if epochs is not None:
        values["epochs"] = epochs
    pairs = final_arguments(values, seed=seed)
    extra = [f"{argument} {shlex.quote(value)}" for argument, value in pairs]
    extra += ["--onnx_export.enabled true", *_distribution_args(distribution), *extra_args]
    hp_tags = {
        f"{TAG_HYPERPARAMETER_PREFIX}{key}": format_cli_value(value)
        for key, value in values.items()
        if value is not None
    }
    hp_tags[f"{TAG_HYPERPARAMETER_PREFIX}seed"] = str(seed)
    return _command_spec(
        ctx,
        name=name,
        stage=STAGE_FINAL,
        command=training_command(ctx, extra),
        production_eligible=True,
        distribution=distribution,
        timeout_s=timeout_s,
        extra_tags=hp_tags,
    )


def build_conversion(
    ctx: JobContext, model: JobInput, *, timeout_s: int | None = 3600, name: str = STAGE_CONVERSION
) -> CommandJobSpec:
    """The conversion job on the CPU cluster: training output folder -> int8 ONNX model folder.

    Args:
        ctx: Shared job context.
        model: The final training job's output (`job_output`: `azureml://jobs/<job>/outputs/model`).
        timeout_s: Wall-clock limit.
        name: Step name.
    """
    command = (
        "python -m ner_lightning.onnx.convert"
        f" --input ${{{{inputs.{MODEL_INPUT}}}}} --output ${{{{outputs.{MODEL_OUTPUT}}}}}"
        f" --data ${{{{inputs.{DATA_INPUT}}}}}"
    )
    spec = _command_spec(
        ctx, name=name, stage=STAGE_CONVERSION, command=command, production_eligible=True, timeout_s=timeout_s
    )
    return replace(
        spec,
        compute="cpu",
        inputs=frozen_mapping(
            {MODEL_INPUT: model, DATA_INPUT: JobInput(type="uri_folder", value=ctx.dataset)}
        ),
    )
