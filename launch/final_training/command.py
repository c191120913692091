"""The final-training job, built from the resolved object alone (the one place it is built).

`argument_pairs` turns a `ResolvedFinalTraining` into training CLI arguments through
`launch.job_specs.final_arguments` (the one map, `PARAMETER_ARGUMENTS`); `final_job` makes the
job spec: command, the starting checkpoint as an input (and `CHECKPOINT_PATH`, as the plan asks),
MLflow experiment, run name and tags.
"""

from __future__ import annotations

from dataclasses import replace

from launch.final_training.resolved import ResolvedFinalTraining
from launch.job_specs import MODEL_OUTPUT, JobContext, build_final_training, final_arguments
from launch.jobs import CommandJobSpec, Distribution, JobInput, frozen_mapping
from ner_lightning.contract import CHECKPOINT_DIR, ENV_CHECKPOINT_PATH, LAST_CHECKPOINT

#: Job input carrying the checkpoint a new variant starts from (`--model.init_checkpoint`).
INIT_INPUT = "init_checkpoint"
#: Job input carrying an interrupted attempt's output folder (its checkpoints).
RESUME_INPUT = "resume_checkpoint"


def argument_pairs(resolved: ResolvedFinalTraining, *, backbone: str | None = None) -> list[tuple[str, str]]:
    """`(argument, value)` pairs of `python -m ner_lightning fit` for a resolved run.

    Args:
        resolved: The resolved run.
        backbone: The backbone value to pass (default: `resolved.backbone`; "" passes none).

    Returns:
        Backbone, hyperparameters, seed, then `--ckpt_path` (a resumed variant: its state wins) or
        `--model.init_checkpoint` (a new variant starting from a checkpoint's weights).
    """
    values = dict(resolved.hyperparameters)
    chosen = resolved.backbone if backbone is None else backbone
    if chosen:
        values["backbone"] = chosen
    pairs = final_arguments(values, seed=resolved.seed)
    if resolved.resume_checkpoint:
        pairs.append(("--ckpt_path", resolved.resume_checkpoint))
    elif resolved.init_checkpoint:
        pairs.append(("--model.init_checkpoint", resolved.init_checkpoint))
    return pairs


def final_job(
    ctx: JobContext,
    resolved: ResolvedFinalTraining,
    *,
    distribution: Distribution | None = None,
    timeout_s: int | None = None,
) -> CommandJobSpec:
    """The final-training job of a resolved run (the pipeline's only way to build it).

    A registered backbone asset is passed as the job input `backbone`; a new variant's starting
    checkpoint is the input `init_checkpoint` (a job-output reference or a local file uploaded at
    submission), named by `--model.init_checkpoint` and `CHECKPOINT_PATH`. A resumed variant gets
    its checkpoints from the interrupted job (`resuming_job`), not from here.
    """
    registered = ctx.backbone is not None and resolved.backbone == ctx.backbone.azure_id
    starting = None if resolved.action == "resume" else resolved.init_checkpoint
    placeholder = f"${{{{inputs.{INIT_INPUT}}}}}"
    values = dict(resolved.hyperparameters)
    if not registered:
        values["backbone"] = resolved.backbone
    spec = build_final_training(
        ctx,
        values,
        seed=resolved.seed,
        distribution=distribution,
        timeout_s=timeout_s,
        extra_args=[f"--model.init_checkpoint {placeholder}"] if starting else [],
    )
    command, inputs = spec.command, dict(spec.inputs)
    if starting:
        command = f"{ENV_CHECKPOINT_PATH}={placeholder} {command}"
        inputs[INIT_INPUT] = JobInput("uri_file", starting)
    return replace(
        spec,
        command=command,
        inputs=frozen_mapping(inputs),
        tags=frozen_mapping({**spec.tags, **resolved.mlflow_tags}),
        experiment_name=resolved.mlflow_experiment or spec.experiment_name,
        display_name=resolved.mlflow_run_name or spec.display_name,
    )


def resuming_job(job: CommandJobSpec, previous_output: str) -> CommandJobSpec:
    """`job` continuing an interrupted attempt whose output is `previous_output` (a job-output URI).

    The attempt's checkpoints (last and best) are copied into this job's output, then training
    resumes from the copied `last.ckpt` when the attempt wrote one (else it starts afresh).
    """
    source = f"${{{{inputs.{RESUME_INPUT}}}}}/{CHECKPOINT_DIR}"
    target = f"${{{{outputs.{MODEL_OUTPUT}}}}}/{CHECKPOINT_DIR}"
    return replace(
        job,
        command=(
            f"mkdir -p {target} && if [ -d {source} ]; then cp -R {source}/. {target}/; fi && "
            f"{job.command} $(if [ -f {target}/{LAST_CHECKPOINT} ]; then echo --ckpt_path {target}/{LAST_CHECKPOINT}; fi)"
        ),
        inputs={**job.inputs, RESUME_INPUT: JobInput("job_output", previous_output)},
    )
