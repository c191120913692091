"""Command jobs as local subprocesses, each attached to an MLflow run created beforehand.

The command line is the one the Azure backend submits: `${{inputs.X}}`, `${{outputs.X}}` and
`${{search_space.X}}` are substituted here (inputs resolved to local paths, outputs to folders
of the job). The process sees `MLFLOW_RUN_ID` and `MLFLOW_TRACKING_URI`, so the training code
attaches to the run exactly as it does inside an Azure ML job.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from launch.errors import LaunchError
from launch.jobs import AssetRef, CommandJobSpec, JobInput, JobResult, JobStatus, frozen_mapping
from launch.local.assets import LocalAssetRegistry
from launch.local.workspace import LocalWorkspace, write_json_atomic
from ner_lightning.contract import (
    ENV_MLFLOW_EXPERIMENT_NAME,
    ENV_MLFLOW_RUN_ID,
    ENV_MLFLOW_TRACKING_URI,
    TAG_STAGE,
)

PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.([A-Za-z0-9_]+)\s*\}\}")
JOB_LOG = "job.log"
JOB_RECORD = "job.json"
#: Lines of the log tail reported as a failed job's error.
ERROR_TAIL_LINES = 40
#: MLflow tag that links a trial run to its sweep's parent run.
PARENT_RUN_TAG = "mlflow.parentRunId"
TAG_JOB_ID = "job_id"

#: Called with the job's MLflow run id at every poll; returning True stops the job (pruning).
Monitor = Callable[[str], bool]


def substitute(command: str, values: Mapping[str, Mapping[str, str]]) -> str:
    """Replace every `${{kind.name}}` in `command`, shell-quoted.

    Args:
        command: Command line with Azure ML placeholders.
        values: kind (`inputs`, `outputs`, `search_space`) -> name -> value.

    Raises:
        LaunchError: A placeholder has no value (an unbound input, output or search dimension).
    """

    def replace(match: re.Match) -> str:
        kind, name = match.group(1), match.group(2)
        if name not in values.get(kind, {}):
            raise LaunchError(
                f"the command uses ${{{{{kind}.{name}}}}} but the job defines no such {kind[:-1] if kind != 'search_space' else 'search dimension'}",
                field=f"{kind}.{name}",
                fix=f"add `{name}` to the job's {kind} or remove it from the command",
            )
        return shlex.quote(str(values[kind][name]))

    return PLACEHOLDER.sub(replace, command)


def _tail(path: Path, lines: int = ERROR_TAIL_LINES) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


class LocalJobRunner:
    """Runs `CommandJobSpec`s as subprocesses in job folders of a workspace.

    Args:
        workspace: Where job folders, logs and the MLflow store live.
        assets: Registry that resolves data-asset references to folders.
        code_dir: Working directory of every job (the code snapshot on Azure); default: current directory.
        poll_interval_s: How often a running job is polled (status, monitor).
        announce: Called with progress lines (job started, where its log is).
    """

    def __init__(
        self,
        workspace: LocalWorkspace,
        assets: LocalAssetRegistry,
        code_dir: str | Path | None = None,
        poll_interval_s: float = 1.0,
        announce: Callable[[str], Any] = print,
    ) -> None:
        self.workspace = workspace
        self.assets = assets
        self.code_dir = Path(code_dir or Path.cwd()).absolute()
        self.poll_interval_s = poll_interval_s
        self.announce = announce

    def resolve_input(self, name: str, job_input: JobInput) -> str:
        """Local path of one input: a registered asset's folder, a file/folder, or an earlier job's output.

        Raises:
            LaunchError: The input does not exist locally.
        """
        value = job_input.value
        if isinstance(value, AssetRef):
            return str(self.assets.data_asset_path(value.name, value.version))
        if job_input.type == "job_output":
            job, _, output = value.partition("/")
            candidate = self.workspace.jobs_dir / job / "outputs" / output
            if candidate.exists():
                return str(candidate)
        path = Path(value)
        if not path.is_absolute():
            path = self.code_dir / path
        if not path.exists():
            raise LaunchError(
                f"input `{name}` does not exist locally",
                path=path,
                field=f"inputs.{name}",
                fix="check the path in the pipeline config, or run the step that produces it",
            )
        return str(path)

    def run(
        self,
        job: CommandJobSpec,
        *,
        search_values: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        extra_tags: Mapping[str, str] | None = None,
        monitor: Monitor | None = None,
    ) -> JobResult:
        """Run the job to a terminal status and return what it left behind.

        Args:
            job: The job spec.
            search_values: Values of `${{search_space.X}}` (sweep trials).
            parent_run_id: Parent MLflow run (the sweep) of a trial run.
            extra_tags: Tags added to the run besides the spec's.
            monitor: Polled with the run id while the job runs; True stops it (status Canceled).
        """
        client = self.workspace.mlflow_client()
        experiment_id = self.workspace.experiment_id(client, job.experiment_name)
        job_id = f"{job.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        job_dir = self.workspace.jobs_dir / job_id
        job_dir.mkdir(parents=True)
        outputs = {name: str(job_dir / "outputs" / name) for name in job.outputs}
        for folder in outputs.values():
            Path(folder).mkdir(parents=True)
        inputs = {name: self.resolve_input(name, value) for name, value in job.inputs.items()}
        command = substitute(
            job.command,
            {"inputs": inputs, "outputs": outputs, "search_space": dict(search_values or {})},
        )
        tags = {**job.tags, **(extra_tags or {}), TAG_STAGE: job.stage, TAG_JOB_ID: job_id}
        if parent_run_id:
            tags[PARENT_RUN_TAG] = parent_run_id
        run = client.create_run(experiment_id, run_name=job.display_name, tags=tags)
        run_id = run.info.run_id
        log_path = job_dir / JOB_LOG
        env = {
            **os.environ,
            **job.env_vars,
            ENV_MLFLOW_RUN_ID: run_id,
            ENV_MLFLOW_TRACKING_URI: self.workspace.tracking_uri,
            ENV_MLFLOW_EXPERIMENT_NAME: job.experiment_name,
            "PYTHONUNBUFFERED": "1",
            # `python` in the command is the interpreter running the launcher (the registered env).
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        record = {
            "job_id": job_id,
            "name": job.name,
            "stage": job.stage,
            "command": command,
            "inputs": inputs,
            "outputs": outputs,
            "run_id": run_id,
            "status": "Running",
            "log": str(log_path),
        }
        self.announce(f"  job {job_id} ({job.stage}) started; log: {log_path}")
        with open(log_path, "wb") as log:
            log.write(f"$ {command}\n".encode())
            log.flush()
            process = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=self.code_dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a stop reaches its children too
            )
            record["pid"] = process.pid
            write_json_atomic(job_dir / JOB_RECORD, record)
            status, reason = self._wait(process, run_id, job.timeout_s, monitor)
        error = "" if status == "Completed" else f"{reason}\n{_tail(log_path)}".strip()
        mlflow_status = {"Completed": "FINISHED", "Canceled": "KILLED"}.get(status, "FAILED")
        try:
            client.log_artifact(run_id, str(log_path), "logs")
        except Exception as exc:  # the log stays in the job folder either way
            self.announce(f"  could not attach the log to run {run_id}: {exc}")
        client.set_terminated(run_id, mlflow_status)
        run_data = client.get_run(run_id).data
        metrics, params = dict(run_data.metrics), dict(run_data.params)
        record.update(status=status, error=error, metrics=metrics)
        write_json_atomic(job_dir / JOB_RECORD, record)
        self.announce(f"  job {job_id}: {status}")
        return JobResult(
            name=job.name,
            job_id=job_id,
            run_id=run_id,
            status=status,
            outputs=frozen_mapping(outputs),
            metrics=frozen_mapping(metrics),
            error=error,
            log_path=str(log_path),
            params=frozen_mapping(params),
        )

    def _wait(
        self, process: subprocess.Popen, run_id: str, timeout_s: int | None, monitor: Monitor | None
    ) -> tuple[JobStatus, str]:
        started = time.monotonic()
        try:
            while True:
                try:
                    code = process.wait(timeout=self.poll_interval_s)
                except subprocess.TimeoutExpired:
                    code = None
                if code is not None:
                    if code == 0:
                        return "Completed", ""
                    signame = (
                        f" ({signal.Signals(-code).name})"
                        if code < 0 and -code in signal.valid_signals()
                        else ""
                    )
                    return "Failed", f"the job process exited with status {code}{signame}"
                if timeout_s is not None and time.monotonic() - started > timeout_s:
                    _stop(process)
                    return "Failed", f"the job ran past its {timeout_s}s limit and was stopped"
                if monitor is not None and monitor(run_id):
                    _stop(process)
                    return "Canceled", "stopped early by the sweep's early-termination policy"
        except BaseException:
            _stop(process)
            raise


def _stop(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the job's process group, then SIGKILL what is left after `grace_s`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def read_job_record(workspace: LocalWorkspace, job_id: str) -> dict:
    """The `job.json` of a job folder (command, pid, run id, status)."""
    return json.loads((workspace.jobs_dir / job_id / JOB_RECORD).read_text(encoding="utf-8"))
