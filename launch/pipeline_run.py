"""A whole pipeline run: the workspace lock, every step up to `until`, and the summary table.

`run_pipeline` is what `ner-pipeline run` does; `run_steps`, `summarize` and `write_summary` back
`Pipeline.run`, `Pipeline.summary` and `Pipeline.write_summary` (the notebook calls them too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.backends import make_backend
from launch.errors import LaunchError
from launch.files import workspace_lock, write_json_atomic
from launch.pipeline_config import load_pipeline_config
from launch.pipeline_state import STEPS, state_dir_for
from ner_lightning.contract import (
    CONVERSION_GATE_METRICS,
    CONVERSION_RECIPE_PARAMS,
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    PRIMARY_METRIC,
)

if TYPE_CHECKING:
    from launch.pipeline import Pipeline, PipelineReport


def run_steps(pipeline: Pipeline, until: str | None = None) -> PipelineReport:
    """Run every step up to and including `until` (default: all), then write the summary."""
    if until is not None and until not in STEPS:
        raise LaunchError(f"unknown step {until!r}", field="--until", fix=f"use one of {', '.join(STEPS)}")
    last = STEPS.index(until) if until else len(STEPS) - 1
    for step in STEPS[: last + 1]:
        getattr(pipeline, step)()
    write_summary(pipeline)
    return pipeline.report


def summarize(pipeline: Pipeline) -> dict[str, Any]:
    """Selected configuration, F1s, model name + version and artifact paths, from the state."""

    def result(step: str) -> dict[str, Any]:
        record = pipeline.state.get(step)
        return record.result if record and record.status == "completed" else {}

    chosen = result("selection").get("selection", {})
    return {
        "pipeline": pipeline.config.name,
        "backend": pipeline.backend.name,
        "reused_steps": pipeline.report.reused,
        "ran_steps": pipeline.report.ran,
        "data_asset": f"{result('data_asset').get('name', '')}:{result('data_asset').get('version', '')}",
        "environment": f"{result('environment').get('name', '')}:{result('environment').get('version', '')}",
        "dry_run_val_f1": result("dry_run").get("metrics", {}).get(PRIMARY_METRIC),
        "sweep_run": result("sweep").get("parent", {}).get("run_id"),
        "trials": len(result("sweep").get("trials", [])),
        "selected_trial": chosen.get("trial_id"),
        "selected_params": chosen.get("params"),
        "selected_backbone": chosen.get("backbone"),
        "sweep_best_val_f1": chosen.get("value"),
        # The final run trains on train + validation, so its val_f1 is not a held-out score;
        # the conversion job's smoke test scores fp32 and int8 on the held-out test split.
        "final_val_f1": result("final_training").get("metrics", {}).get(PRIMARY_METRIC),
        "heldout_f1_fp32": result("conversion").get("metrics", {}).get(HELDOUT_F1_FP32),
        "heldout_f1_int8": result("conversion").get("metrics", {}).get(HELDOUT_F1_INT8),
        # The int8 gate (paired bootstrap over every held-out sentence) and the chosen recipe.
        "int8_gate": {
            name: value
            for name, value in result("conversion").get("metrics", {}).items()
            if name in CONVERSION_GATE_METRICS and name not in (HELDOUT_F1_FP32, HELDOUT_F1_INT8)
        },
        "int8_recipe": {
            name: result("conversion").get("params", {}).get(name) for name in CONVERSION_RECIPE_PARAMS
        },
        "final_run": result("final_training").get("run_id"),
        "final_output": next(iter(result("final_training").get("outputs", {}).values()), None),
        "model_folder": next(iter(result("conversion").get("outputs", {}).values()), None),
        "registered_model": f"{result('registration').get('name', '')}:{result('registration').get('version', '')}",
        "selection_folder": result("selection").get("folder"),
    }


def write_summary(pipeline: Pipeline) -> Path:
    """Print the summary table and write it (JSON + text) next to the state file."""
    summary = summarize(pipeline)
    width = max(len(k) for k in summary)
    lines = [f"{key.ljust(width)}  {_cell(value)}" for key, value in summary.items()]
    text = "\n".join(["Phase 1 pipeline summary", "-" * 60, *lines]) + "\n"
    pipeline.announce(text)
    path = pipeline.state_dir / f"{pipeline.config.name}_summary.txt"
    path.write_text(text, encoding="utf-8")
    write_json_atomic(pipeline.state_dir / f"{pipeline.config.name}_summary.json", summary)
    pipeline.report.summary, pipeline.report.summary_path = summary, path
    return path


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return "-" if value in (None, "", ":") else str(value)


def run_pipeline(
    config_path: str | Path,
    *,
    backend: str = "local",
    until: str | None = None,
    force: tuple[str, ...] = (),
    workspace: str | Path | None = None,
    code_dir: str | Path | None = None,
    announce: Callable[[str], Any] = print,
    cpu: bool = False,
) -> PipelineReport:
    """Load the config, take the workspace lock and run the pipeline (what `ner-pipeline run` does).

    On the emulated workspace an interruption (Ctrl-C, SIGTERM) cancels the running jobs: their
    process groups end and their MLflow runs are marked KILLED; the state file keeps the submitted
    job names, so the next run resumes.

    Args:
        config_path: Pipeline config (configs/pipeline/<preset>.yaml).
        backend: `local` (the emulated workspace) or `azure`.
        until: Last step to run (default: all).
        force: Steps to recompute even when unchanged.
        workspace: Overrides the config's `workspace` folder.
        code_dir: Repository root (default: current directory).
        announce: Where progress lines go.
        cpu: Swap the config's GPU overlay for its CPU one (`training.accelerator`), e.g. to run a
            GPU preset on the emulator.
    """
    config = load_pipeline_config(config_path)
    if workspace is not None:
        config = replace(config, workspace=Path(workspace))
    if cpu:
        config = config.on_cpu()
    code = Path(code_dir or Path.cwd()).absolute()
    from launch.pipeline import Pipeline

    with workspace_lock(
        Path(config.workspace).expanduser().absolute(), config.lock_timeout_s, announce=announce
    ):
        chosen = make_backend(config, backend, code, announce)
        try:
            pipeline = Pipeline(config, chosen, state_dir_for(config), code, force=force, announce=announce)
            report = run_steps(pipeline, until)
        finally:
            close = getattr(chosen.ml_client, "close", None)
            if close is not None:
                for name in close():
                    announce(f"canceled job {name} (its processes ended, its MLflow run marked KILLED)")
    if report.reused:
        announce(f"reused: {', '.join(report.reused)}")
    return report
