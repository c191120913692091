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
jobs' watchdogs end their process groups (launch/local/runner.py), and the next client on the
workspace finds the jobs whose executor is gone and records them Failed, MLflow runs FAILED, as
Azure ML fails a job whose node was lost. (On Azure ML the job would keep running and a rerun
re-attaches to it; here there is nothing left to attach to, so the rerun submits it again.)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from launch.files import read_json, write_json_atomic
from launch.local.runner import Outcome, instance_count, run_command_job
from launch.local.snapshot import snapshot_code, upload
from launch.local.workspace import LocalWorkspace

TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
RECORD = "status.json"
JOB_FILE = "job.yaml"
_MLFLOW_STATUS = {"Completed": "FINISHED", "Canceled": "KILLED"}


def _start_ticks(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), or None where /proc is absent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def executor_record() -> dict[str, Any]:
    """Who runs the jobs this process submits: host, pid and start time (a reused pid is told apart)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_ticks(os.getpid())}


def executor_gone(executor: dict[str, Any]) -> bool:
    """True when the process that ran a job no longer exists (False when it may, or on another host)."""
    if executor.get("host") != socket.gethostname():
        return False
    pid = int(executor["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    started = executor.get("started")
    return started is not None and _start_ticks(pid) not in (None, started)


def stop_orphaned_group(pgid: int, job_name: str) -> None:
    """SIGKILL what is left of job `job_name`'s process group (its processes carry its run id)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    marker = f"AZUREML_RUN_ID={job_name}".encode()
    for stat in proc.glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if marker in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            return


class JobStore:
    """Job folders and their status records (`jobs/<name>/status.json`)."""

    def __init__(self, workspace: LocalWorkspace) -> None:
        self.workspace = workspace
        self._lock = threading.Lock()

    def job_dir(self, name: str) -> Path:
        """Folder of job `name`."""
        return self.workspace.jobs_dir / name

    def output_dir(self, name: str, output: str) -> Path:
        """Folder of output `output` of job `name`."""
        return self.job_dir(name) / "outputs" / output

    def read(self, name: str) -> dict[str, Any] | None:
        """The record of job `name`, or None."""
        path = self.job_dir(name) / RECORD
        if not name or "/" in name or not path.is_file():
            return None
        return read_json(
            path, what=f"the record of job {name}", fix="delete the job's folder and resubmit it"
        )

    def write(self, name: str, record: dict[str, Any]) -> None:
        """Replace the record of job `name`."""
        with self._lock:
            write_json_atomic(self.job_dir(name) / RECORD, record)

    def update(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into the record of job `name`."""
        with self._lock:
            record = self.read(name) or {"name": name}
            record.update(fields)
            write_json_atomic(self.job_dir(name) / RECORD, record)
            return record

    def names(self) -> list[str]:
        """Every job name, oldest first."""
        folder = self.workspace.jobs_dir
        if not folder.is_dir():
            return []
        records = [r for r in (self.read(p.name) for p in folder.iterdir()) if r]
        return [r["name"] for r in sorted(records, key=lambda r: (r.get("created", 0), r["name"]))]

    def create_child(
        self,
        client: Any,
        parent: str,
        parent_run: str,
        experiment_id: str,
        sweep: Any,
        number: int,
        values: dict,
    ) -> tuple[str, str]:
        """Create a sweep trial's MLflow run and record; returns (child job name, run id)."""
        mlflow = self.workspace.mlflow_client()
        tags = {str(k): str(v) for k, v in (sweep.tags or {}).items()}
        tags.update({"mlflow.parentRunId": parent_run, "trial_number": str(number)})
        run = mlflow.create_run(experiment_id, run_name=f"{sweep.display_name or parent}_{number}", tags=tags)
        name = run.info.run_id
        # The trial's values are job properties (as the service keeps them), not MLflow params:
        # the training code logs its own params, and MLflow refuses a second, differently spelled value.
        self.job_dir(name).mkdir(parents=True, exist_ok=True)
        self.write(
            name,
            {
                "name": name,
                "type": "command",
                "status": "Running",
                "parent": parent,
                "run_id": name,
                "experiment_id": experiment_id,
                "experiment": sweep.experiment_name,
                "display_name": f"{sweep.display_name or parent}_{number}",
                "outputs": list(sweep.outputs or {}),
                "tags": tags,
                "properties": {
                    "hyperparameters": json.dumps(values, default=str),
                    "trial_number": str(number),
                },
                "created": time.time(),
                "executor": executor_record(),
            },
        )
        return name, name


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
        self._check_references(job, task)
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

    def _check_references(self, job: Any, task: Any) -> None:
        from azure.ai.ml.exceptions import ValidationException
        from azure.core.exceptions import ResourceNotFoundError

        from launch.local.runner import _name_version

        environment = str(task.environment or "")
        try:
            self.client.environments.get(*_name_version(environment))
        except ResourceNotFoundError as error:
            raise ResourceNotFoundError(
                message=f"job {job.display_name!r}: environment {environment} is not registered in the "
                f"workspace ({error.message}); register it before submitting jobs that use it"
            ) from None
        compute = str(job.compute or "").removeprefix("azureml:")
        cluster = self.client.compute.get(compute)
        nodes = instance_count(task)
        if nodes > int(cluster.max_instances or 0):
            raise ValidationException(
                message=f"job {job.display_name!r} asks for {nodes} nodes but cluster {compute} has "
                f"max_instances={cluster.max_instances}",
                no_personal_data_message="instance_count exceeds the cluster's max_instances",
            )
        for input_name, value in (job.inputs or {}).items():
            path = str(getattr(value, "path", "") or "")
            if path.startswith("azureml:") and not path.startswith("azureml://"):
                reference = path.removeprefix("azureml:")
                asset, version = (reference.split("@")[0], None) if "@" in reference else _name_version(path)
                try:
                    self.client.data.get(asset, version)
                except ResourceNotFoundError as error:
                    raise ResourceNotFoundError(
                        message=f"job {job.display_name!r}: input {input_name} names {path}: {error.message}"
                    ) from None

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
