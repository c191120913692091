"""Run a `SweepJob` entity of the emulated workspace: an Optuna study whose trials are child jobs.

Everything comes from the loaded entity: the search space (`Choice`, `Uniform`, `LogUniform`
whose bounds are natural logarithms, as in Azure ML), the sampling algorithm (`random` with its
seed -> RandomSampler, `grid` -> GridSampler, `bayesian` -> TPESampler), the objective
(`primary_metric`, `goal`), the limits (total and concurrent trials, sweep and trial timeouts)
and the early-termination policy (`median_stopping` -> MedianPruner, `bandit` -> slack against
the best trial at the same report). Each trial is a child job with its own MLflow run (tag
`mlflow.parentRunId`), listed by `jobs.list(parent_job_name=...)` as the service lists children.
The objective of a trial is the last logged value of the primary metric, as on Azure ML.
"""

from __future__ import annotations

import json
import math
import threading
from types import SimpleNamespace
from typing import Any

from launch.errors import LaunchError
from launch.local.runner import Outcome

PARENT_RUN_TAG = "mlflow.parentRunId"


def _dimension(trial: Any, name: str, dimension: Any) -> Any:
    kind = type(dimension).__name__
    if kind == "Choice":
        return trial.suggest_categorical(name, list(dimension.values))
    if kind == "LogUniform":
        low, high = math.exp(dimension.min_value), math.exp(dimension.max_value)
        return trial.suggest_float(name, low, high, log=True)
    if kind == "Uniform":
        return trial.suggest_float(name, dimension.min_value, dimension.max_value)
    if kind == "Randint":
        return trial.suggest_int(name, 0, int(dimension.upper) - 1)
    raise LaunchError(
        f"search dimension `{name}` of type {kind} is not supported by the emulator",
        field=f"search_space.{name}",
        fix="use choice, uniform, loguniform or randint",
    )


def _sampler(sweep: Any) -> Any:
    import optuna

    algorithm = sweep.sampling_algorithm
    kind = str(getattr(algorithm, "type", algorithm)).lower()
    seed = getattr(algorithm, "seed", None) or 0  # a fixed order when the entity names no seed
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "bayesian":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "grid":
        grid = {}
        for name, dimension in sweep.search_space.items():
            if type(dimension).__name__ != "Choice":
                raise LaunchError(
                    f"grid sampling needs choice dimensions only; `{name}` is {type(dimension).__name__}",
                    field=f"search_space.{name}",
                    fix="make it a choice, or use random/bayesian sampling",
                )
            grid[name] = list(dimension.values)
        return optuna.samplers.GridSampler(grid, seed=seed)
    raise LaunchError(
        f"unknown sampling algorithm {kind!r}", field="sampling_algorithm", fix="random, grid, bayesian"
    )


def _grid_size(sweep: Any) -> int | None:
    kind = str(getattr(sweep.sampling_algorithm, "type", sweep.sampling_algorithm)).lower()
    if kind != "grid":
        return None
    return math.prod(len(d.values) for d in sweep.search_space.values())


class _Feed:
    """Reports a running trial's primary metric to Optuna; True when the policy stops the trial."""

    def __init__(self, client: Any, study: Any, trial: Any, sweep: Any, maximize: bool) -> None:
        self.client, self.study, self.trial = client, study, trial
        self.metric = sweep.objective.primary_metric
        self.policy = sweep.early_termination
        self.maximize = maximize
        self.reported: dict[int, float] = {}

    def __call__(self, run_id: str) -> bool:
        history = self.client.get_metric_history(run_id, self.metric)
        for index, point in enumerate(sorted(history, key=lambda p: (p.step, p.timestamp))):
            step = point.step if point.step is not None else index
            if step not in self.reported:
                self.reported[step] = point.value
                self.trial.report(point.value, step)
        if not self.reported or self.policy is None:
            return False
        count = len(self.reported)
        interval = max(int(getattr(self.policy, "evaluation_interval", 1) or 1), 1)
        if count < int(getattr(self.policy, "delay_evaluation", 0) or 0) or count % interval:
            return False
        if "bandit" in str(getattr(self.policy, "type", "")).lower():
            return self._bandit(max(self.reported))
        return self.trial.should_prune()

    def _bandit(self, step: int) -> bool:
        others = [
            t.intermediate_values[step]
            for t in self.study.get_trials(deepcopy=False)
            if t.number != self.trial.number and step in t.intermediate_values
        ]
        if not others:
            return False
        value = self.reported[step]
        best = max(others) if self.maximize else min(others)
        factor = getattr(self.policy, "slack_factor", None)
        amount = getattr(self.policy, "slack_amount", None)
        if self.maximize:
            bound = best / (1 + factor) if factor else best - (amount or 0.0)
            return value < bound
        bound = best * (1 + factor) if factor else best + (amount or 0.0)
        return value > bound


def run_sweep_job(
    client: Any, name: str, sweep: Any, *, run_id: str, experiment_id: str, cancel: threading.Event
) -> Outcome:
    """Run every trial of the loaded `SweepJob` `sweep` (job `name`, MLflow run `run_id`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported by their jobs
    store = client.jobs.store
    mlflow = client.workspace.mlflow_client()
    log = store.job_dir(name) / "user_logs" / "std_log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    maximize = str(sweep.objective.goal).lower().startswith("max")
    pruner = optuna.pruners.NopPruner()
    policy = sweep.early_termination
    if policy is not None and "median" in str(getattr(policy, "type", "")).lower():
        pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0, interval_steps=1)
    study = optuna.create_study(
        study_name=name,
        direction="maximize" if maximize else "minimize",
        sampler=_sampler(sweep),
        pruner=pruner,
    )
    limits = sweep.limits
    total = int(limits.max_total_trials or 1)
    grid = _grid_size(sweep)
    if grid is not None:
        total = min(total, grid)
    lock = threading.Lock()
    results: dict[int, str] = {}

    def say(line: str) -> None:
        with lock, open(log, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    say(f"sweep {name}: {total} trials, objective {sweep.objective.goal} {sweep.objective.primary_metric}")
    trial_job = SimpleNamespace(
        command=sweep.trial.command,
        code=sweep.trial.code,
        environment=sweep.trial.environment,
        environment_variables=sweep.trial.environment_variables,
        distribution=getattr(sweep.trial, "distribution", None),
        resources=getattr(sweep.trial, "resources", None),
        inputs=sweep.inputs,
        outputs=sweep.outputs,
        experiment_name=sweep.experiment_name,
        limits=SimpleNamespace(timeout=getattr(limits, "trial_timeout", None)),
    )

    def objective(trial: optuna.Trial) -> float:
        if cancel.is_set():
            raise _Stopped()
        values = {key: _dimension(trial, key, dim) for key, dim in sweep.search_space.items()}
        child_name, child_run = store.create_child(
            client, name, run_id, experiment_id, sweep, trial.number, values
        )
        say(f"trial {trial.number} ({child_name}): {json.dumps(values, default=str)}")
        feed = _Feed(mlflow, study, trial, sweep, maximize)
        outcome = client.jobs.execute_command(
            child_name, trial_job, child_run, experiment_id, search_values=values, cancel=cancel, monitor=feed
        )
        metric = mlflow.get_run(child_run).data.metrics.get(sweep.objective.primary_metric)
        status = outcome.status
        if status == "Completed" and metric is None:
            status = "Failed"
            store.update(
                child_name, status=status, error=f"the trial logged no `{sweep.objective.primary_metric}`"
            )
        with lock:
            results[trial.number] = status
        say(f"trial {trial.number} ({child_name}): {status} {sweep.objective.primary_metric}={metric}")
        if cancel.is_set():
            raise _Stopped()
        if status == "Canceled":
            raise optuna.TrialPruned()
        if status != "Completed":
            raise _TrialFailed(outcome.error)
        return float(metric)

    try:
        study.optimize(
            objective,
            n_trials=total,
            n_jobs=max(int(limits.max_concurrent_trials or 1), 1),
            timeout=limits.timeout,
            catch=(_TrialFailed,),
        )
    except _Stopped:
        return Outcome("Canceled", "the sweep was canceled")
    if cancel.is_set():
        return Outcome("Canceled", "the sweep was canceled")
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if completed:
        best = study.best_value
        mlflow.log_metric(run_id, sweep.objective.primary_metric, best)
        say(f"best {sweep.objective.primary_metric}={best}")
    mlflow.log_metric(run_id, "completed_trials", len(completed))
    if not completed:
        return Outcome("Failed", f"every trial failed ({len(results)} run); see the trials' logs")
    return Outcome("Completed")


class _TrialFailed(Exception):
    """A trial ended Failed (recorded; the study goes on)."""


class _Stopped(Exception):
    """The sweep was canceled: no further trials."""
