"""`ml_client.jobs` of the emulated workspace: submit, get, list, stream, cancel, download.

Submission does what the service does before a job is queued: it checks that the environment,
the compute and every `azureml:<name>:<version>` input exist, uploads local input files to the
default datastore, snapshots the code folder (SDK ignore-file rules) and names the job after its
MLflow run (on Azure ML the run id is the job name). The job is then serialized with the SDK
(`_to_dict`, what `dump` writes) into `jobs/<name>/job.yaml`; the executor runs what
`load_job` reads back from that file and nothing else: the YAML is the contract.

Jobs run in threads of this process (the emulator has no service to outlive it): closing the
client, or leaving the interpreter, cancels every running job and ends its process group, and
its MLflow run is marked KILLED. A process killed outright (SIGKILL, a crash) cannot do that: its
jobs' watchdogs end their process groups (launch/local/process_group.py), and the next client on the
workspace finds the jobs whose executor is gone and records them Failed, MLflow runs FAILED, as
Azure ML fails a job whose node was lost. (On Azure ML the job would keep running and a rerun
re-attaches to it; here there is nothing left to attach to, so the rerun submits it again.)

Job records live in `job_store.py`, orphan detection in `orphans.py`, the checks made before a job
is queued in `submission_checks.py`; a command job runs in `runner.py`, a sweep in `sweep.py`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from launch.local.job_store import JOB_FILE, TERMINAL, JobStore
from launch.local.orphans import executor_gone, executor_record, stop_orphaned_group
from launch.local.runner import Outcome, run_command_job
from launch.local.snapshot import snapshot_code, upload
from launch.local.submission_checks import check_references

_MLFLOW_STATUS = {"Completed": "FINISHED", "Canceled": "KILLED"}


class JobOperations:
    """`ml_client.jobs` (create_or_update, get, list, stream, begin_cancel, download).

    Args:
        client: The owning `EmulatedMLClient`.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.store = JobStore(client.workspace)
        self._cancel: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self.reap_orphans()
        atexit.register(self.shutdown)

    def reap_orphans(self) -> list[str]:
        """Record Failed the jobs whose executor died without ending them; returns their names.

        What is left of their process groups is killed (their watchdogs normally did it already),
        their MLflow runs are marked FAILED and the record says what happened.
        """
        reaped = []
        for name in self.store.names():
            record = self.store.read(name) or {}
            executor = record.get("executor")
            if record.get("status") in TERMINAL or not executor or not executor_gone(executor):
                continue
            if record.get("pgid"):
                stop_orphaned_group(int(record["pgid"]), name)
            self._finish(
                name,
                str(record.get("run_id") or name),
                Outcome(
                    "Failed",
                    f"the process that ran this job (pid {executor.get('pid')} on {executor.get('host')}) ended "
                    "without finishing it (killed?); the job's processes were stopped",
                ),
            )
            reaped.append(name)
        return reaped

    # --- submission ------------------------------------------------------------------------
    def create_or_update(self, job: Any, *, experiment_name: str | None = None, **_: Any) -> Any:
        """Submit a command or sweep job (a builder entity or a loaded job).

        Raises:
            ResourceNotFoundError: The environment, compute or a data asset input does not exist.
            ValidationException: The job asks for more nodes than its cluster allows.
        """
        from azure.ai.ml import load_job

        from launch.azure.entities import as_job

        job = as_job(job)
        kind = str(job.type)
        if experiment_name:
            job.experiment_name = experiment_name
        experiment = str(job.experiment_name or "Default")
        task = job.trial if kind == "sweep" else job
        check_references(self.client, job, task)
        payload = json.loads(json.dumps(job._to_dict(), default=str))
        _, code_dir = snapshot_code(self.client.workspace, str(task.code or "."))
        (payload["trial"] if kind == "sweep" else payload)["code"] = str(code_dir)
        for input_name, value in (job.inputs or {}).items():
            path = getattr(value, "path", None)
            if path is not None and not str(path).startswith("azureml:") and Path(str(path)).exists():
                payload["inputs"][input_name]["path"] = upload(self.client.workspace, str(path))
        mlflow = self.client.workspace.mlflow_client()
        experiment_id = self.client.workspace.experiment_id(mlflow, experiment)
        tags = {str(k): str(v) for k, v in (job.tags or {}).items()}
        run = mlflow.create_run(experiment_id, run_name=job.display_name or None, tags=tags)
        name = run.info.run_id
        payload["name"] = name
        folder = self.store.job_dir(name)
        folder.mkdir(parents=True)
        # The record first: a submission killed from here on leaves a job the next client reaps.
        self.store.write(
            name,
            {
                "name": name,
                "type": kind,
                "status": "Queued",
                "parent": None,
                "run_id": name,
                "experiment_id": experiment_id,
                "experiment": experiment,
                "display_name": job.display_name,
                "outputs": [],
                "tags": tags,
                "properties": {},
                "created": time.time(),
                "executor": executor_record(),
            },
        )
        try:
            (folder / JOB_FILE).write_text(yaml.safe_dump(payload, sort_keys=True), encoding="utf-8")
            loaded = load_job(source=str(folder / JOB_FILE))
            self.store.update(name, outputs=list(loaded.outputs or {}))
            cancel = threading.Event()
            self._cancel[name] = cancel
            thread = threading.Thread(
                target=self._execute, args=(name, loaded, experiment_id, cancel), daemon=True
            )
            self._threads[name] = thread
            thread.start()
        except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed before the job could run
            started = self._threads.get(name)
            if started is not None and started.is_alive():
                self._cancel[name].set()
                started.join()
            else:
                self._finish(name, name, Outcome("Canceled", "the submission was interrupted"))
            raise
        return self.get(name)

    # --- execution -------------------------------------------------------------------------
    def execute_command(self, name: str, job: Any, run_id: str, experiment_id: str, **kwargs: Any) -> Outcome:
        """Run a command job (or sweep trial) to its end and record status, error and MLflow state."""
        self.store.update(name, status="Running", started=time.time())
        try:
            outcome = run_command_job(
                self.client, name, job, run_id=run_id, experiment_id=experiment_id, **kwargs
            )
        except BaseException as error:  # a bug in the emulator: the job failed, the record says why
            outcome = Outcome("Failed", f"emulator error: {error!r}")
        self._finish(name, run_id, outcome)
        return outcome

    def _finish(self, name: str, run_id: str, outcome: Outcome) -> None:
        mlflow = self.client.workspace.mlflow_client()
        for log in sorted((self.store.job_dir(name) / "user_logs").glob("*.txt")):
            with contextlib.suppress(Exception):  # the log stays in the job folder either way
                mlflow.log_artifact(run_id, str(log), "user_logs")
        with contextlib.suppress(Exception):  # the record below still says how the job ended
            mlflow.set_terminated(run_id, _MLFLOW_STATUS.get(outcome.status, "FAILED"))
        self.store.update(name, status=outcome.status, error=outcome.error, finished=time.time())

    def _execute(self, name: str, job: Any, experiment_id: str, cancel: threading.Event) -> None:
        if str(job.type) == "sweep":
            from launch.local.sweep import run_sweep_job

            self.store.update(name, status="Running", started=time.time())
            try:
                outcome = run_sweep_job(
                    self.client, name, job, run_id=name, experiment_id=experiment_id, cancel=cancel
                )
            except BaseException as error:
                outcome = Outcome("Failed", f"emulator error: {error!r}")
            self._finish(name, name, outcome)
        else:
            self.execute_command(name, job, name, experiment_id, cancel=cancel)

    # --- reading ---------------------------------------------------------------------------
    def get(self, name: str, **_: Any) -> Any:
        """The job entity with its current status.

        Raises:
            ResourceNotFoundError: No such job.
        """
        from azure.ai.ml import load_job
        from azure.ai.ml.entities import CommandJob, JobService
        from azure.core.exceptions import ResourceNotFoundError

        record = self.store.read(name)
        if record is None:
            raise ResourceNotFoundError(message=f"job {name} does not exist in the workspace")
        path = self.store.job_dir(name) / JOB_FILE
        if path.is_file():
            entity = load_job(source=str(path))
        else:  # a sweep trial
            entity = CommandJob(
                name=name,
                command=record.get("command", ""),
                experiment_name=record.get("experiment"),
                display_name=record.get("display_name"),
                tags=record.get("tags", {}),
            )
        entity._status = record["status"]
        entity.properties = {**(entity.properties or {}), **record.get("properties", {})}
        if record.get("error"):
            entity.properties["error"] = record["error"]
        log = self.store.job_dir(name) / "user_logs" / "std_log.txt"
        entity.services = {"Studio": JobService(endpoint=log.as_uri())}
        return entity

    def list(self, *, parent_job_name: str | None = None, **_: Any) -> Iterator[Any]:
        """Jobs of the workspace (top-level ones), or the children of `parent_job_name`."""
        names = [n for n in self.store.names() if (self.store.read(n) or {}).get("parent") == parent_job_name]
        return iter([self.get(n) for n in names])

    def stream(self, name: str, *, out: Any = None, poll_s: float = 0.5) -> None:
        """Print the job's log as it grows until the job ends.

        Raises:
            JobException: The job ended Failed or Canceled (as the SDK does).
        """
        from azure.ai.ml.exceptions import JobException

        out = out or sys.stdout
        log = self.store.job_dir(name) / "user_logs" / "std_log.txt"
        position = 0
        out.write(f"RunId: {name}\nWeb View: {log.as_uri()}\n\nStreaming user_logs/std_log.txt\n")
        while True:
            record = self.store.read(name) or {}
            if log.is_file():
                with open(log, encoding="utf-8", errors="replace") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position = handle.tell()
                if chunk:
                    out.write(chunk)
                    out.flush()
            if record.get("status") in TERMINAL:
                break
            time.sleep(poll_s)
        out.write(f"\nExecution Summary\n=================\nRunId: {name}\nStatus: {record.get('status')}\n")
        if record.get("status") != "Completed":
            raise JobException(
                message=f"Job {name} ended {record.get('status')}: {record.get('error', '')}",
                no_personal_data_message="job failed",
            )

    def begin_cancel(self, name: str, **_: Any) -> Any:
        """Cancel a running job (its process group is stopped, its run marked KILLED)."""
        from launch.local.registry import _Poller

        if self.store.read(name) is None:
            from azure.core.exceptions import ResourceNotFoundError

            raise ResourceNotFoundError(message=f"job {name} does not exist in the workspace")
        event = self._cancel.get(name)
        if event is not None:
            event.set()
            thread = self._threads.get(name)
            if thread is not None:
                thread.join()
        return _Poller(None)

    def download(
        self, name: str, *, download_path: str | Path = ".", output_name: str | None = None, all: bool = False
    ) -> None:
        """Copy a finished job's outputs (`named-outputs/<output>/`) and, with `all`, its logs.

        Raises:
            JobException: The job has not ended yet.
        """
        from azure.ai.ml.exceptions import JobException

        record = self.store.read(name) or {}
        if record.get("status") not in TERMINAL:
            raise JobException(
                message=f"job {name} is {record.get('status')}; outputs can be downloaded once it ends",
                no_personal_data_message="job not terminal",
            )
        target = Path(download_path)
        wanted = record.get("outputs", []) if all or output_name is None else [output_name]
        for output in wanted:
            source = self.store.output_dir(name, output)
            if source.exists():
                shutil.copytree(source, target / "named-outputs" / output, dirs_exist_ok=True)
        if all:
            shutil.copytree(
                self.store.job_dir(name) / "user_logs", target / "artifacts" / "user_logs", dirs_exist_ok=True
            )

    # --- lifecycle -------------------------------------------------------------------------
    def shutdown(self) -> list[str]:
        """Cancel every job still running in this process; returns their names."""
        running = [name for name, thread in self._threads.items() if thread.is_alive()]
        for name in running:
            self._cancel[name].set()
        for name in running:
            self._threads[name].join()
        return running
