"""Job records of the emulated workspace: one folder per job, its state in `jobs/<name>/status.json`.

A record holds what the service keeps about a job (status, type, parent, MLflow run and
experiment, declared outputs, tags, properties, timestamps, the executor that runs it and, once
started, its process group). `job.yaml` next to it is the serialized job, the executor's contract.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from launch.files import read_json, write_json_atomic
from launch.local.orphans import executor_record
from launch.local.workspace import LocalWorkspace

#: Statuses of a job that has ended.
TERMINAL = ("Completed", "Failed", "Canceled", "NotResponding")
#: File name of a job's record in its folder.
RECORD = "status.json"
#: File name of a job's serialized entity (what the executor loads) in its folder.
JOB_FILE = "job.yaml"


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
