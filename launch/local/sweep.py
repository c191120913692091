"""Sweeps on the local backend: an Optuna study whose trials are local subprocess jobs.

Sampling: `random` -> RandomSampler, `grid` -> GridSampler, `bayesian` -> TPESampler, all
seeded by the spec. Early termination `median` -> MedianPruner, fed by polling the trial run's
`val_f1` history in MLflow; a pruned trial's process is stopped (status Canceled). `bandit` has
no Optuna equivalent and is refused. Trials run one at a time or `max_concurrent_trials` at once.
The objective of a trial is the last logged value of the primary metric, as on Azure ML.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from launch.errors import LaunchError
from launch.jobs import Choice, JobResult, LogUniform, SweepJobSpec, TrialResult, Uniform, frozen_mapping
from launch.local.runner import LocalJobRunner
from ner_lightning.contract import TAG_STAGE


def _sampler(sweep: SweepJobSpec) -> Any:
    import optuna

    if sweep.sampling_algorithm == "random":
        return optuna.samplers.RandomSampler(seed=sweep.seed)
    if sweep.sampling_algorithm == "bayesian":
        return optuna.samplers.TPESampler(seed=sweep.seed)
    if sweep.sampling_algorithm == "grid":
        grid = {}
        for name, dim in sweep.search_space.items():
            if not isinstance(dim, Choice):
                raise LaunchError(
                    f"grid sampling needs choice dimensions only; `{name}` is {type(dim).__name__}",
                    field=f"search_space.{name}",
                    fix="make it a choice, or use random/bayesian sampling",
                )
            grid[name] = list(dim.values)
        return optuna.samplers.GridSampler(grid, seed=sweep.seed)
    raise LaunchError(
        f"unknown sampling algorithm {sweep.sampling_algorithm!r}",
        field="sampling_algorithm",
        fix="use random, grid or bayesian",
    )


def _pruner(sweep: SweepJobSpec) -> Any:
    import optuna

    policy = sweep.early_termination
    if policy is None:
        return optuna.pruners.NopPruner()
    if policy.policy == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=1,
            n_warmup_steps=max(policy.delay_evaluation - 1, 0),
            interval_steps=max(policy.evaluation_interval, 1),
        )
    raise LaunchError(
        f"early termination policy {policy.policy!r} is not available on the local backend",
        field="early_termination.policy",
        fix="use `median` (Optuna's MedianPruner), or no early termination",
    )


def _suggest(trial: Any, name: str, dim: Any) -> Any:
    if isinstance(dim, Choice):
        return trial.suggest_categorical(name, list(dim.values))
    if isinstance(dim, LogUniform):
        return trial.suggest_float(name, dim.min_value, dim.max_value, log=True)
    if isinstance(dim, Uniform):
        return trial.suggest_float(name, dim.min_value, dim.max_value)
    raise LaunchError(f"unknown search dimension type for `{name}`", field=f"search_space.{name}")


def _grid_size(sweep: SweepJobSpec) -> int | None:
    if sweep.sampling_algorithm != "grid":
        return None
    size = 1
    for dim in sweep.search_space.values():
        size *= len(dim.values)
    return size


class _MetricFeed:
    """Reports a running trial's new primary-metric values to Optuna; True when it should stop."""

    def __init__(self, client: Any, trial: Any, metric: str, direction_sign: float) -> None:
        self.client = client
        self.trial = trial
        self.metric = metric
        self.sign = direction_sign
        self.reported: set[int] = set()

    def __call__(self, run_id: str) -> bool:
        history = self.client.get_metric_history(run_id, self.metric)
        for position, point in enumerate(sorted(history, key=lambda p: (p.step, p.timestamp))):
            step = point.step if point.step is not None else position
            if step in self.reported:
                continue
            self.reported.add(step)
            self.trial.report(point.value, step)
        return bool(self.reported) and self.trial.should_prune()


def run_sweep(
    runner: LocalJobRunner, sweep: SweepJobSpec, announce: Callable[[str], Any] = print
) -> tuple[JobResult, list[TrialResult]]:
    """Run every trial of `sweep` and return the parent result and the trials in trial order."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workspace = runner.workspace
    client = workspace.mlflow_client()
    experiment_id = workspace.experiment_id(client, sweep.trial.experiment_name)
    parent = client.create_run(
        experiment_id,
        run_name=f"{sweep.trial.display_name} (sweep)",
        tags={**sweep.trial.tags, TAG_STAGE: sweep.trial.stage, "sweep.sampling": sweep.sampling_algorithm},
    )
    parent_id = parent.info.run_id
    direction = "maximize" if sweep.goal.lower().startswith("max") else "minimize"
    study = optuna.create_study(
        study_name=f"{sweep.trial.name}-{parent_id[:8]}",
        direction=direction,
        sampler=_sampler(sweep),
        pruner=_pruner(sweep),
    )
    n_trials = sweep.limits.max_total_trials
    grid = _grid_size(sweep)
    if grid is not None:
        n_trials = min(n_trials, grid)
    trials: dict[int, TrialResult] = {}
    lock = threading.Lock()
    announce(f"  sweep run {parent_id}: {n_trials} trials, {sweep.sampling_algorithm} sampling")

    def objective(trial: optuna.Trial) -> float:
        values = {name: _suggest(trial, name, dim) for name, dim in sweep.search_space.items()}
        feed = _MetricFeed(client, trial, sweep.primary_metric, 1.0)
        spec = sweep.trial
        if sweep.limits.trial_timeout_s and not spec.timeout_s:
            from dataclasses import replace

            spec = replace(spec, timeout_s=sweep.limits.trial_timeout_s)
        result = runner.run(
            spec,
            search_values=values,
            parent_run_id=parent_id,
            extra_tags={
                "trial_number": str(trial.number),
                **{f"param.{k}": str(v) for k, v in values.items()},
            },
            monitor=feed if sweep.early_termination else None,
        )
        metric = result.metrics.get(sweep.primary_metric)
        error = result.error
        status = result.status
        if status == "Completed" and metric is None:
            status, error = "Failed", f"the trial completed without logging `{sweep.primary_metric}`"
        with lock:
            trials[trial.number] = TrialResult(
                trial_id=result.job_id,
                run_id=result.run_id,
                status=status,
                params=frozen_mapping(values),
                metrics=result.metrics,
                error=error,
            )
        if status == "Canceled":
            raise optuna.TrialPruned()
        if status != "Completed":
            raise _TrialFailed(error)
        return float(metric)

    started = time.monotonic()
    study.optimize(
        objective,
        n_trials=n_trials,
        n_jobs=max(sweep.limits.max_concurrent_trials, 1),
        timeout=sweep.limits.timeout_s,
        catch=(_TrialFailed,),
    )
    ordered = [trials[k] for k in sorted(trials)]
    completed = [t for t in ordered if t.status == "Completed"]
    metrics = {}
    if completed:
        values = [t.metrics[sweep.primary_metric] for t in completed]
        metrics[sweep.primary_metric] = max(values) if direction == "maximize" else min(values)
        client.log_metric(parent_id, sweep.primary_metric, metrics[sweep.primary_metric])
    client.log_metric(parent_id, "completed_trials", len(completed))
    client.set_terminated(parent_id, "FINISHED" if completed else "FAILED")
    status = "Completed" if completed else "Failed"
    announce(
        f"  sweep run {parent_id}: {len(completed)}/{len(ordered)} trials completed in {time.monotonic() - started:.0f}s"
    )
    parent_result = JobResult(
        name=sweep.trial.name,
        job_id=f"sweep-{parent_id[:12]}",
        run_id=parent_id,
        status=status,
        metrics=frozen_mapping(metrics),
        error="" if completed else "every trial failed",
    )
    return parent_result, ordered


class _TrialFailed(Exception):
    """A trial's job ended Failed (recorded; the study goes on)."""
