"""Pure conversion: backend-neutral job specs -> azure-ai-ml `command` / `sweep` entities.

Nothing here talks to Azure; submission lives in `submit.py`. azure-ai-ml takes over a second to
import, so it is imported inside the functions and `import launch.azure.entities` stays cheap.

Mapping:
- data asset inputs -> `Input(type="uri_folder", path="azureml:<name>:<version>")` (never a path);
- config files -> `uri_file` inputs (passed verbatim, uploaded by the SDK at submission);
- earlier job outputs -> `azureml://jobs/<job>/outputs/<output>`;
- compute role -> cluster name from `configs/azure/compute.yaml`; environment -> `azureml:name:version`;
- `Distribution` -> `PyTorchDistribution` + `instance_count`;
- sweep dimensions -> `Choice` / `Uniform` / `LogUniform` (Azure's log-uniform bounds are natural
  logarithms, ours are the values), early termination -> `MedianStoppingPolicy` / `BanditPolicy`.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from launch.azure.compute import ComputeConfig
from launch.errors import LaunchError
from launch.jobs import (
    AssetRef,
    Choice,
    CommandJobSpec,
    JobInput,
    LogUniform,
    SearchDimension,
    SweepJobSpec,
    Uniform,
)
from launch.search_space import format_cli_value

#: The one form of a job-output reference (what `JobResult.outputs` holds and jobs take as input).
JOB_OUTPUT_URI = re.compile(r"^azureml://jobs/[A-Za-z0-9_.-]+/outputs/[A-Za-z0-9_]+(/paths/[^\s]+)?$")
_PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")


def placeholders(command: str) -> set[tuple[str, str]]:
    """`{(kind, name)}` of every `${{inputs.X}}`, `${{outputs.X}}`, `${{search_space.X}}` in a command."""
    return {(kind, name) for kind, name in _PLACEHOLDER.findall(command)}


def unbound_placeholders(
    command: str, inputs: set[str] | Any, outputs: set[str] | Any, search_space: set[str] | Any = ()
) -> list[str]:
    """Placeholders of `command` that no input, output or search dimension binds."""
    bound = {"inputs": set(inputs), "outputs": set(outputs), "search_space": set(search_space)}
    return sorted(
        f"${{{{{kind}.{name}}}}}" for kind, name in placeholders(command) if name not in bound[kind]
    )


def check_bindings(spec: CommandJobSpec | SweepJobSpec) -> None:
    """Refuse a spec whose command names an unbound placeholder, or a sweep dimension it never uses.

    Raises:
        LaunchError: Listing the unbound placeholders / unused dimensions.
    """
    trial = spec.trial if isinstance(spec, SweepJobSpec) else spec
    space = set(spec.search_space) if isinstance(spec, SweepJobSpec) else set()
    unbound = unbound_placeholders(trial.command, trial.inputs, trial.outputs, space)
    if unbound:
        raise LaunchError(
            f"job {trial.name!r} names unbound placeholders: {', '.join(unbound)}",
            field="command",
            fix="add the matching inputs/outputs/search dimensions, or drop the placeholders",
        )
    used = {name for kind, name in placeholders(trial.command) if kind == "search_space"}
    unused = sorted(space - used)
    if unused:
        raise LaunchError(
            f"sweep dimensions {', '.join(unused)} never reach the trial command",
            field="search_space",
            fix="name each dimension as ${{search_space.X}} in the trial command",
        )


def azure_input(job_input: JobInput) -> Any:
    """One neutral input as an azure-ai-ml `Input`."""
    from azure.ai.ml import Input

    value = job_input.value
    if job_input.type == "job_output":
        if not JOB_OUTPUT_URI.match(str(value)):
            raise LaunchError(
                f"job output reference {value!r} is not azureml://jobs/<job>/outputs/<output>[/paths/<path>]",
                field="inputs",
                fix="pass the `outputs` value of the earlier job's result (JobResult.outputs) unchanged",
            )
        return Input(type="uri_folder", path=str(value))
    path = value.azure_id if isinstance(value, AssetRef) else str(value)
    return Input(type=job_input.type, path=path)


def _azure_dimension(dimension: SearchDimension) -> Any:
    from azure.ai.ml import sweep

    if isinstance(dimension, Choice):
        # Booleans as the CLI spells them, so the substituted command line is unambiguous.
        values = [format_cli_value(v) if isinstance(v, bool) else v for v in dimension.values]
        return sweep.Choice(values=values)
    if isinstance(dimension, LogUniform):
        return sweep.LogUniform(
            min_value=math.log(dimension.min_value), max_value=math.log(dimension.max_value)
        )
    if isinstance(dimension, Uniform):
        return sweep.Uniform(min_value=dimension.min_value, max_value=dimension.max_value)
    raise LaunchError(
        f"unsupported search dimension {dimension!r}",
        field="search_space",
        fix="use choice/uniform/loguniform",
    )


def _default(dimension: SearchDimension) -> Any:
    if isinstance(dimension, Choice):
        first = dimension.values[0]
        return format_cli_value(first) if isinstance(first, bool) else first
    return dimension.min_value


def _command_node(spec: CommandJobSpec, compute: ComputeConfig, code: str | Path, extra_inputs: dict) -> Any:
    from azure.ai.ml import Output, PyTorchDistribution, command

    distribution = None
    instance_count = None
    if spec.distribution is not None:
        distribution = PyTorchDistribution(
            process_count_per_instance=spec.distribution.process_count_per_instance
        )
        instance_count = spec.distribution.instance_count
    node = command(
        command=spec.command,
        code=str(code),
        inputs={**{name: azure_input(value) for name, value in spec.inputs.items()}, **extra_inputs},
        outputs={name: Output(type="uri_folder") for name in spec.outputs},
        environment=spec.environment.azure_id,
        compute=compute.cluster_name(spec.compute),
        experiment_name=spec.experiment_name,
        display_name=spec.display_name,
        tags=dict(spec.tags),
        environment_variables=dict(spec.env_vars),
        distribution=distribution,
        instance_count=instance_count,
    )
    if spec.timeout_s:
        node.set_limits(timeout=spec.timeout_s)
    return node


def command_entity(spec: CommandJobSpec, compute: ComputeConfig, code: str | Path) -> Any:
    """The azure-ai-ml `Command` for a command spec (submit it, or `.\\_to_job()` to dump it).

    Args:
        spec: The neutral command job.
        compute: Cluster per compute role.
        code: Folder uploaded as the job's code snapshot (the repository root).

    Raises:
        LaunchError: The command names an unbound placeholder.
    """
    check_bindings(spec)
    return _command_node(spec, compute, code, {})


def sweep_entity(spec: SweepJobSpec, compute: ComputeConfig, code: str | Path) -> Any:
    """The azure-ai-ml `Sweep` for a sweep spec: trial command, search space, objective, limits.

    Raises:
        LaunchError: A placeholder is unbound or a dimension unused.
    """
    from azure.ai.ml.sweep import BanditPolicy, MedianStoppingPolicy, RandomSamplingAlgorithm

    check_bindings(spec)
    trial = spec.trial
    # The SDK binds search dimensions as trial inputs and rewrites them to ${{search_space.X}}.
    command = _PLACEHOLDER.sub(
        lambda m: f"${{{{inputs.{m.group(2)}}}}}" if m.group(1) == "search_space" else m.group(0),
        trial.command,
    )
    node = _command_node(
        replace(trial, command=command),
        compute,
        code,
        {name: _default(dimension) for name, dimension in spec.search_space.items()},
    )
    sampling: Any = spec.sampling_algorithm
    if spec.sampling_algorithm == "random":
        sampling = RandomSamplingAlgorithm(seed=spec.seed)
    policy = None
    if spec.early_termination is not None:
        early = spec.early_termination
        if early.policy == "bandit":
            policy = BanditPolicy(
                slack_factor=early.slack_factor,
                evaluation_interval=early.evaluation_interval,
                delay_evaluation=early.delay_evaluation,
            )
        else:
            policy = MedianStoppingPolicy(
                evaluation_interval=early.evaluation_interval, delay_evaluation=early.delay_evaluation
            )
    sweep_node = node(**{name: _azure_dimension(dim) for name, dim in spec.search_space.items()}).sweep(
        compute=compute.cluster_name(trial.compute),
        sampling_algorithm=sampling,
        primary_metric=spec.primary_metric,
        goal=spec.goal,
        early_termination_policy=policy,
    )
    sweep_node.set_limits(
        max_total_trials=spec.limits.max_total_trials,
        max_concurrent_trials=spec.limits.max_concurrent_trials,
        timeout=spec.limits.timeout_s,
        trial_timeout=spec.limits.trial_timeout_s,
    )
    sweep_node.experiment_name = trial.experiment_name
    sweep_node.display_name = trial.display_name
    sweep_node.tags = dict(trial.tags)
    return sweep_node


def as_job(entity: Any) -> Any:
    """The standalone job (`CommandJob` / `SweepJob`) of a builder entity, e.g. to dump it as YAML.

    `load_job` gives a builder entity back for command jobs, so this also normalises loaded jobs;
    a job that already is standalone is returned as it is.
    """
    from azure.ai.ml.entities import CommandJob
    from azure.ai.ml.entities._job.sweep.sweep_job import SweepJob

    return entity if isinstance(entity, (CommandJob, SweepJob)) else entity._to_job()
