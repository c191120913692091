"""The pipeline's state file (`<workspace>/pipelines/<name>.json`): step -> fingerprint, status, result.

A later run reuses a completed step whose fingerprint is unchanged; the file is written atomically
after every step. A file that is not valid JSON, or valid JSON of the wrong shape (a list, a
missing key, a field of the wrong type) is refused with its path and the fix, never with a traceback.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.errors import LaunchError
from launch.files import PIPELINES_DIR, read_json, write_json_atomic
from launch.jobs import JobResult, TrialResult

if TYPE_CHECKING:
    from launch.pipeline_config import PipelineConfig

STEPS = (
    "validate",
    "environment",
    "data_asset",
    "dry_run",
    "sweep",
    "selection",
    "final_training",
    "conversion",
    "registration",
)
STATE_VERSION = 1
STEP_STATUSES = ("submitted", "completed", "failed")
#: What to do with a state file that cannot be used. Deleting it is safe: every completed step is
#: recomputed, registered assets are reused by fingerprint and a model already registered with the
#: same lineage or content is reused (`AzureBackend.register_model`), never registered twice.
STATE_FIX = (
    "delete it (or move it aside) and run again: steps are recomputed, registered data, environments and "
    "models are reused by fingerprint and content, so no second production model is registered"
)


def step_digest(payload: Any) -> str:
    """sha256 of a step's inputs (JSON with sorted keys): the fingerprint the state file records."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def spec_key(spec: Any) -> str:
    """Fingerprint of a job or sweep spec (command, inputs, tags, search space): what defines the step."""
    return step_digest(repr(spec))


def _plain(value: Any) -> dict[str, Any]:
    """A frozen spec/result dataclass as plain JSON-able data (mapping proxies become dicts)."""
    return {name: dict(v) if isinstance(v, Mapping) else v for name, v in vars(value).items()}


def job_record(result: JobResult) -> dict[str, Any]:
    """A job result as the state file stores it."""
    return _plain(result)


def trial_record(trial: TrialResult) -> dict[str, Any]:
    """A sweep trial as the state file stores it."""
    return _plain(trial)


@dataclass
class StepRecord:
    """What one step left in the state file."""

    fingerprint: str
    status: str
    result: dict[str, Any] = field(default_factory=dict)
    finished_at: str = ""


#: Field -> type of a step record, as the state file stores it.
_RECORD_FIELDS = {"fingerprint": str, "status": str, "result": dict, "finished_at": str}


def _record(path: Path, step: Any, raw: Any) -> StepRecord:
    """One step's record, checked field by field."""
    where = f"steps.{step}"
    if step not in STEPS:
        raise LaunchError(
            f"the pipeline state file names an unknown step {str(step)[:40]!r}",
            path=path,
            field=where,
            fix=STATE_FIX,
        )
    if not isinstance(raw, Mapping):
        raise LaunchError(
            f"the pipeline state file's record of `{step}` is a {type(raw).__name__}, not a mapping",
            path=path,
            field=where,
            fix=STATE_FIX,
        )
    for name, kind in _RECORD_FIELDS.items():
        if name not in raw and name != "finished_at":
            raise LaunchError(
                f"the pipeline state file's record of `{step}` has no `{name}`",
                path=path,
                field=f"{where}.{name}",
                fix=STATE_FIX,
            )
        if name in raw and not isinstance(raw[name], kind):
            raise LaunchError(
                f"the pipeline state file's `{where}.{name}` is a {type(raw[name]).__name__}, not a {kind.__name__}",
                path=path,
                field=f"{where}.{name}",
                fix=STATE_FIX,
            )
    unknown = sorted(set(raw) - set(_RECORD_FIELDS))
    if unknown or raw["status"] not in STEP_STATUSES:
        problem = (
            f"unknown field(s) {', '.join(map(str, unknown))}" if unknown else f"status {raw['status']!r}"
        )
        raise LaunchError(
            f"the pipeline state file's record of `{step}` has {problem}",
            path=path,
            field=where,
            fix=STATE_FIX,
        )
    return StepRecord(**{name: raw[name] for name in _RECORD_FIELDS if name in raw})


def read_state(path: Path) -> dict[str, StepRecord]:
    """The step records of a state file.

    Raises:
        LaunchError: The file is not valid JSON or not shaped like a state file, naming the field and the fix.
    """
    payload = read_json(path, what="the pipeline state file", fix=STATE_FIX)
    if not isinstance(payload, Mapping) or not isinstance(payload.get("steps", {}), Mapping):
        shape = (
            type(payload).__name__ if not isinstance(payload, Mapping) else "mapping whose `steps` is not one"
        )
        raise LaunchError(
            f"the pipeline state file is a {shape}, not a mapping of steps",
            path=path,
            field="steps",
            fix=STATE_FIX,
        )
    version = payload.get("version", STATE_VERSION)
    if version != STATE_VERSION:
        raise LaunchError(
            f"the pipeline state file has version {version!r}; this launcher reads version {STATE_VERSION}",
            path=path,
            field="version",
            fix=STATE_FIX,
        )
    return {str(step): _record(path, step, raw) for step, raw in payload.get("steps", {}).items()}


class PipelineState:
    """The per-pipeline state file: step -> fingerprint, status, result.

    Args:
        path: The JSON file (written atomically after every step).

    Raises:
        LaunchError: The file exists but is corrupt or wrongly shaped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, StepRecord] = read_state(path) if path.is_file() else {}

    def get(self, step: str) -> StepRecord | None:
        """The record of `step`, or None."""
        return self.steps.get(step)

    def put(self, step: str, record: StepRecord) -> None:
        """Record a step and save the file."""
        record.finished_at = time.strftime("%Y-%m-%d %H:%M:%S")
        self.steps[step] = record
        write_json_atomic(
            self.path, {"version": STATE_VERSION, "steps": {k: asdict(v) for k, v in self.steps.items()}}
        )


def state_dir_for(config: PipelineConfig) -> Path:
    """Where the state, selection and summary files of `config` live: `<workspace>/pipelines/`."""
    return Path(config.workspace).expanduser().absolute() / PIPELINES_DIR
