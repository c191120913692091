"""Backend-neutral orchestration of Phase 1 (P1-3 to P1-5), re-runnable step by step.

Steps, in order::

    validate -> environment -> data_asset -> dry_run -> sweep -> selection
             -> final_training -> conversion -> registration

The environment is registered first: every job, data preparation included, runs in it.
A job step records the submitted job's name in the state file right after submission; a rerun
re-attaches to that job while it is queued, running or completed instead of submitting it again.

Every step has a fingerprint over its own inputs and the results of the steps it depends on.
A state file per pipeline (in the workspace, `pipelines/<name>.json`, `launch.pipeline_state`)
records each step's fingerprint and result; a later run reuses a completed step whose fingerprint is
unchanged and whose outputs still exist and hash the same (`launch.steps.reuse`), and says so,
unless `force` names it. A failed final training is resumed from its `last.ckpt`.
The orchestration only builds specs (`launch.job_specs`) and calls the backend; it never trains.

Layout: `launch.pipeline_config` (the config), `launch.pipeline_state` (the state file),
`launch.steps.{prepare,sweep,release}` (the steps), `launch.pipeline_run` (a whole run, the lock and
the summary), `launch.backends` (backend selection for the CLI). This module keeps the `Pipeline`
object: its step bookkeeping (`_step`), job submission and one method per step.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch.backends import make_backend
from launch.configs import load_config
from launch.errors import JobFailedError, LaunchError
from launch.fingerprints import dataset_fingerprint, git_commit
from launch.job_specs import azure_config_files
from launch.jobs import AssetRef, CommandJobSpec, JobResult
from launch.pipeline_config import NAMED_KEYS, PipelineConfig, load_pipeline_config
from launch.pipeline_run import run_pipeline, run_steps, summarize, write_summary
from launch.pipeline_state import STEPS, PipelineState, StepRecord, state_dir_for, step_digest
from launch.pipeline_state import job_record as _job_to_dict
from launch.steps import final_training as final_training_step
from launch.steps import prepare, release
from launch.steps import sweep as sweep_steps
from launch.steps.reuse import missing_outputs

#: Re-exported: the names `launch.pipeline` offered before the split (CLI, notebook, tests).
__all__ = [
    "NAMED_KEYS",
    "STEPS",
    "Pipeline",
    "PipelineConfig",
    "PipelineReport",
    "PipelineState",
    "StepRecord",
    "dataset_fingerprint",
    "load_pipeline_config",
    "make_backend",
    "run_pipeline",
    "state_dir_for",
]


Announce = Callable[[str], Any]


@dataclass
class PipelineReport:
    """What a pipeline run did, step by step (also the summary's source)."""

    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    summary_path: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    """Phase 1 on one backend, step by step (the notebook calls the steps; `run` calls them all).

    Args:
        config: Validated pipeline config.
        backend: An `AzureBackend` (on a workspace, or on the local emulator for `--backend local`).
        state_dir: Folder of the state and summary files (the local workspace's `pipelines/`).
        code_dir: Repository root (git commit, job working directory).
        force: Steps to recompute even when their fingerprint is unchanged.
        announce: Where progress lines go.
    """

    def __init__(
        self,
        config: PipelineConfig,
        backend: Any,
        state_dir: Path,
        code_dir: Path,
        force: tuple[str, ...] = (),
        announce: Announce = print,
    ) -> None:
        unknown = [step for step in force if step not in STEPS]
        if unknown:
            raise LaunchError(
                f"unknown step(s) to force: {', '.join(unknown)}",
                field="--force",
                fix=f"use one of {', '.join(STEPS)}",
            )
        self.config = config
        self.backend = backend
        self.code_dir = code_dir
        self.force = set(force)
        self.announce = announce
        self.state_dir = state_dir
        self.state = PipelineState(state_dir / f"{config.name}.json")
        self.report = PipelineReport()
        self.commit = git_commit(code_dir)
        self._train_configs = tuple(load_config(p) for p in config.train_configs)
        self._results: dict[str, dict[str, Any]] = {}
        self._fingerprints: dict[str, str] = {}

    # --- step bookkeeping ------------------------------------------------------------------
    def _step(
        self, step: str, inputs: Mapping[str, Any], action: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        number = STEPS.index(step) + 1
        fingerprint = step_digest({"step": step, **inputs})
        self._fingerprints[step] = fingerprint
        record = self.state.get(step)
        reusable = (
            record is not None
            and record.status == "completed"
            and record.fingerprint == fingerprint
            and step not in self.force
        )
        # A reused step's outputs must still exist and hash the same (a deleted model folder or
        # conversion output is produced again, not pointed at).
        gone = missing_outputs(self, step, record.result) if reusable and record else None
        if reusable and record and gone is None:
            self.announce(
                f"[{number}/{len(STEPS)}] {step}: reused (inputs unchanged since {record.finished_at})"
            )
            self.report.reused.append(step)
            self._results[step] = record.result
            return record.result
        if gone:
            # Submit afresh: re-attaching to (or resuming) the job that wrote the lost output would
            # hand back the same missing output.
            self.force.add(step)
        why = f" again: {gone}" if gone else ""
        self.announce(f"[{number}/{len(STEPS)}] {step}: running{why}")
        try:
            result = action()
        except Exception as exc:
            current = self.state.get(step)
            previous = current.result if current and current.fingerprint == fingerprint else {}
            failure = {**previous, **(getattr(exc, "job_result", None) or {})}
            self.state.put(step, StepRecord(fingerprint, "failed", failure))
            raise
        # Continue with what the state file holds (sorted keys), so a later run that reuses the
        # step builds the downstream specs from exactly the same values.
        result = json.loads(json.dumps(result, sort_keys=True, default=str))
        self.state.put(step, StepRecord(fingerprint, "completed", result))
        self.report.ran.append(step)
        self._results[step] = result
        self.announce(f"[{number}/{len(STEPS)}] {step}: done")
        return result

    def _record_submitted(self, step: str, job_name: str) -> None:
        """Write the job name to the state file the moment the job exists (before waiting)."""
        record = self.state.get(step)
        same = record is not None and record.fingerprint == self._fingerprints[step]
        history = list((record.result.get("submitted") or []) if same and record else [])
        self.state.put(
            step,
            StepRecord(
                self._fingerprints[step], "submitted", {"job_id": job_name, "submitted": [*history, job_name]}
            ),
        )

    def _attachable(self, step: str) -> str | None:
        """The job a previous run of `step` submitted, when it is still queued, running or completed."""
        record = self.state.get(step)
        if (
            record is None
            or record.fingerprint != self._fingerprints.get(step)
            or step in self.force
            or not record.result.get("job_id")
        ):
            return None
        job_name = str(record.result["job_id"])
        status = self.backend.job_status(job_name)
        if status is None or status in ("Failed", "Canceled", "NotResponding"):
            return None
        return job_name

    def _previous_job(self, step: str) -> str | None:
        """The job the last attempt of `step` (same inputs) submitted, whatever its status."""
        record = self.state.get(step)
        if record is None or record.fingerprint != self._fingerprints.get(step) or step in self.force:
            return None
        return record.result.get("job_id") or None

    def _need(self, step: str) -> dict[str, Any]:
        if step not in self._results:
            record = self.state.get(step)
            if record is None or record.status != "completed":
                raise LaunchError(
                    f"step `{step}` has not completed yet",
                    field=step,
                    fix=f"run `ner-pipeline run --until {step}` (or the `{step}` step) first",
                )
            self._results[step] = record.result
        return self._results[step]

    def _job_context(self) -> Any:
        from launch.job_specs import JobContext

        data, env = self._need("data_asset"), self._need("environment")
        backbone = data.get("backbone")
        return JobContext(
            experiment_name=self.config.experiment,
            dataset=AssetRef(data["name"], data["version"], data["fingerprint"]),
            environment=AssetRef(env["name"], env["version"], env["fingerprint"]),
            git_commit=self.commit,
            train_configs=self._train_configs,
            tracked_configs=(
                self.config.source,
                *azure_config_files(self.config.azure_config_dir, self.backend.name),
            ),
            final_configs=(
                load_config(self.config.sweep_config),
                load_config(self.config.final_training_config),
            ),
            display_prefix=f"{self.config.name}-",
            backbone=AssetRef(backbone["name"], backbone["version"], backbone["fingerprint"])
            if backbone
            else None,
        )

    def _run_job(self, spec: CommandJobSpec, step: str) -> JobResult:
        """Submit `spec` (or re-attach to the job a previous run submitted) and wait for it."""
        attached = self._attachable(step)
        if attached:
            result = self.backend.attach(spec, attached)
        else:
            result = self.backend.run(spec, on_submitted=lambda name: self._record_submitted(step, name))
        if result.status != "Completed":
            error = JobFailedError(
                f"{spec.stage} job {result.job_id} ended {result.status}:\n{result.error}",
                path=result.log_path or None,
                fix="read the job log, fix the cause and run the pipeline again",
            )
            error.job_result = _job_to_dict(result)
            raise error
        return result

    # --- steps (launch/steps/) ---------------------------------------------------------------
    def validate(self) -> dict[str, Any]:
        """Check the backend's infrastructure (never creates anything); always runs."""
        return prepare.validate(self)

    def environment(self) -> dict[str, Any]:
        """Register (or reuse) the environment version every job runs in (before any job)."""
        return prepare.environment(self)

    def data_asset(self) -> dict[str, Any]:
        """Register (or reuse) the data asset (prepared by a job when configured) and the backbone."""
        return prepare.data_asset(self)

    def dry_run(self) -> dict[str, Any]:
        """One short training job; it must load the data, log `val_f1` and write a checkpoint."""
        return prepare.dry_run(self)

    def sweep(self) -> dict[str, Any]:
        """The hyperparameter sweep (objective `val_f1`)."""
        return sweep_steps.sweep(self)

    def selection(self) -> dict[str, Any]:
        """Pick the best trial deterministically; the criteria and ranked table go to files and MLflow."""
        return sweep_steps.selection(self)

    def final_training(self) -> dict[str, Any]:
        """Train (or reuse) the variant final_training.yaml resolves to (launch/steps/final_training.py)."""
        return final_training_step.run(self)

    def conversion(self) -> dict[str, Any]:
        """Convert the final training's output to an int8 ONNX model folder on the CPU cluster."""
        return release.conversion(self)

    def registration(self) -> dict[str, Any]:
        """Register the int8 ONNX folder with stage=prod and its lineage (checked, never overwriting)."""
        return release.registration(self)

    # --- whole run (launch/pipeline_run.py) ------------------------------------------------------
    def run(self, until: str | None = None) -> PipelineReport:
        """Run every step up to and including `until` (default: all), then write the summary."""
        return run_steps(self, until)

    def summary(self) -> dict[str, Any]:
        """Selected configuration, F1s, model name + version and artifact paths, from the state."""
        return summarize(self)

    def write_summary(self) -> Path:
        """Print the summary table and write it (JSON + text) next to the state file."""
        return write_summary(self)
