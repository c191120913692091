"""Before a completed step is reused: do its outputs still exist, and do they hash the same?

The state file says what a step produced; the workspace may have lost it since (a deleted model
folder, a removed job output, an edited selection). `missing_outputs` asks the backend (the Azure ML
workspace or its emulator) for each recorded output; when one is gone or changed, the step runs
again and the pipeline says why, instead of reusing a result that points at nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.errors import LaunchError
from launch.job_specs import MODEL_OUTPUT
from launch.lineage import TAG_CONTENT_SHA256
from launch.selection import SELECTION_FILE

if TYPE_CHECKING:
    from launch.pipeline import Pipeline

#: The state-file key of the conversion output's content fingerprint.
OUTPUT_SHA256 = "output_sha256"


def _data_asset(pipeline: Pipeline, result: Mapping[str, Any]) -> str | None:
    try:
        ref = pipeline.backend.registered_data_asset(str(result["name"]), str(result["version"]))
    except LaunchError as error:
        return f"data asset {result['name']}:{result['version']} is gone from the workspace ({error.message})"
    if ref.fingerprint != result.get("fingerprint"):
        return f"data asset {result['name']}:{result['version']} no longer carries the recorded fingerprint"
    return None


def _selection(_pipeline: Pipeline, result: Mapping[str, Any]) -> str | None:
    path = Path(str(result.get("folder", ""))) / SELECTION_FILE
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"the selection file {path} is missing or unreadable"
    if written != result.get("selection"):
        return f"the selection file {path} differs from the recorded selection"
    return None


def _conversion(pipeline: Pipeline, result: Mapping[str, Any]) -> str | None:
    job = str(result.get("job_id", ""))
    found = pipeline.backend.output_fingerprint(job, MODEL_OUTPUT) if job else None
    if found is None:
        return f"the conversion output of job {job or '(none)'} no longer exists"
    recorded = result.get(OUTPUT_SHA256)
    if recorded and found != recorded:
        return f"the conversion output of job {job} changed since it was written"
    return None


def _registration(pipeline: Pipeline, result: Mapping[str, Any]) -> str | None:
    name, version = str(result.get("name", "")), str(result.get("version", ""))
    recorded = (result.get("tags") or {}).get(TAG_CONTENT_SHA256)
    found = pipeline.backend.model_fingerprint(name, version, recorded)
    if found is None:
        return f"registered model {name}:{version} or its files no longer exist"
    if recorded and found != recorded:
        return f"the files of registered model {name}:{version} no longer match its content_sha256"
    return None


CHECKS: dict[str, Callable[[Pipeline, Mapping[str, Any]], str | None]] = {
    "data_asset": _data_asset,
    "selection": _selection,
    "conversion": _conversion,
    "registration": _registration,
}


def missing_outputs(pipeline: Pipeline, step: str, result: Mapping[str, Any]) -> str | None:
    """Why the recorded result of `step` cannot be reused (an output is gone or changed), or None.

    Args:
        pipeline: The running pipeline (its backend answers the lookups).
        step: The step about to be reused.
        result: What the state file recorded for it.
    """
    check = CHECKS.get(step)
    return check(pipeline, result) if check is not None else None
