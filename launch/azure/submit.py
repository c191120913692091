"""Submit azure-ai-ml entities, stream or poll them to a terminal status, and read sweep trials.

Kept apart from the pure entity builders: only these functions talk to the workspace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from launch.errors import JobFailedError
from launch.jobs import JobResult, TrialResult, frozen_mapping, job_output_uri
from launch.search_space import PARAMETER_ARGUMENTS
from ner_lightning.contract import PRIMARY_METRIC

#: Azure ML job statuses after which nothing changes any more.
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Canceled", "NotResponding"})
#: Reads `(metrics, params)` of one MLflow run id (an Azure job name is its run id).
RunReader = Callable[[str], tuple[Mapping[str, float], Mapping[str, str]]]


def submit(ml_client: Any, entity: Any) -> Any:
    """Submit a command or sweep entity; returns the created job (with `.name`, `.studio_url`)."""
    return ml_client.jobs.create_or_update(entity)


def stream(ml_client: Any, job_name: str) -> None:
    """Stream the job's log to stdout until it ends (the SDK raises when it fails)."""
    ml_client.jobs.stream(job_name)


def wait(
    ml_client: Any,
    job_name: str,
    *,
    poll_s: float = 30.0,
    timeout_s: float | None = None,
    echo: Callable[[str], Any] = print,
    sleep: Callable[[float], Any] = time.sleep,
) -> str:
    """Poll a job until it reaches a terminal status; print each status change.

    Args:
        ml_client: An `azure.ai.ml.MLClient`.
        job_name: The submitted job's name.
        poll_s: Seconds between polls.
        timeout_s: Give up (raise) after this many seconds of polling; None waits forever.
        echo: Where status changes are printed.
        sleep: Sleep function (injectable so tests do not wait).

    Returns:
        The terminal status (`Completed`, `Failed`, `Canceled`, `NotResponding`).

    Raises:
        JobFailedError: The job did not finish within `timeout_s`.
    """
    waited = 0.0
    last = None
    while True:
        job = ml_client.jobs.get(job_name)
        status = str(job.status)
        if status != last:
            echo(f"{job_name}: {status}")
            last = status
        if status in TERMINAL_STATUSES:
            return status
        if timeout_s is not None and waited >= timeout_s:
            raise JobFailedError(
                f"job {job_name} still {status} after {timeout_s:.0f}s",
                field="timeout_s",
                fix=f"follow it in the studio ({getattr(job, 'studio_url', '')}) or cancel it: az ml job cancel -n {job_name}",
            )
        sleep(poll_s)
        waited += poll_s


def require_completed(result: JobResult) -> JobResult:
    """Return `result` when it completed, else raise with its status, error and log location.

    Raises:
        JobFailedError: The job ended in another status.
    """
    if result.status != "Completed":
        raise JobFailedError(
            f"job {result.job_id} ({result.name}) ended {result.status}: {result.error or 'no error text'}",
            field=result.name,
            fix=f"read the job's logs ({result.log_path}), fix the cause, and re-run the step",
        )
    return result


def mlflow_run_reader(ml_client: Any) -> RunReader:
    """A `RunReader` over the workspace's MLflow tracking server (needs azureml-mlflow)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = ml_client.workspaces.get(ml_client.workspace_name).mlflow_tracking_uri
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)

    def read(run_id: str) -> tuple[Mapping[str, float], Mapping[str, str]]:
        run = client.get_run(run_id)
        return dict(run.data.metrics), dict(run.data.params)

    return read


def _trial_params(job: Any, params: Mapping[str, str]) -> dict[str, object]:
    """Sweep parameters of a trial: from the child job's hyperparameter property, else MLflow params."""
    properties = getattr(job, "properties", None) or {}
    for key in ("hyperparameters", "_aml_system_hyperparameters"):
        if key in properties:
            try:
                return dict(json.loads(properties[key]))
            except (TypeError, ValueError):
                pass
    found: dict[str, object] = {}
    for name, argument in PARAMETER_ARGUMENTS.items():
        for key in (name, argument.lstrip("-")):
            if key in params:
                found[name] = params[key]
    return found


def list_sweep_children(
    ml_client: Any, parent_name: str, read_run: RunReader | None = None
) -> list[TrialResult]:
    """Every trial of a sweep with its status, parameters and metrics (`val_f1` included).

    Args:
        ml_client: An `azure.ai.ml.MLClient`.
        parent_name: The sweep job's name.
        read_run: Reads a trial's MLflow metrics and params (default: the workspace's MLflow).
    """
    read_run = read_run or mlflow_run_reader(ml_client)
    trials = []
    for child in ml_client.jobs.list(parent_job_name=parent_name):
        metrics, params = read_run(child.name)
        trials.append(
            TrialResult(
                trial_id=child.name,
                run_id=child.name,
                status=str(child.status),  # type: ignore[arg-type]
                params=frozen_mapping(_trial_params(child, params)),
                metrics=frozen_mapping({k: float(v) for k, v in metrics.items()}),
                error="" if str(child.status) == "Completed" else str(getattr(child, "status", "")),
            )
        )
    trials.sort(key=lambda trial: trial.trial_id)
    return trials


def outputs_of(job_name: str, output_names: tuple[str, ...]) -> dict[str, str]:
    """`azureml://` URIs of a job's named outputs."""
    return {name: job_output_uri(job_name, name) for name in output_names}


def primary_metric_of(trials: list[TrialResult]) -> dict[str, float]:
    """`{trial id: val_f1}` of the trials that logged it."""
    return {t.trial_id: t.metrics[PRIMARY_METRIC] for t in trials if PRIMARY_METRIC in t.metrics}
