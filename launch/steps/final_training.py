"""The pipeline's final-training step: the resolved final-training object decides and builds the job.

The run mode of configs/final_training.yaml, applied to the variant store, is the one reuse
decision (`launch/final_training/decision.py`): a complete variant is returned without training
(the step reports `reused`), a new or interrupted one is trained or resumed. The pipeline state
records the outcome; it does not decide a second time, and `--force final_training` changes nothing
the run mode does not allow (reuse_if_exists still reuses; force_new trains v(n+1)).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.errors import JobFailedError, LaunchError
from launch.final_training import (
    ResolvedDataset,
    ResolvedFinalTraining,
    final_job,
    load_final_training_config,
    mark_variant_complete,
    mark_variant_failed,
    mark_variant_running,
)
from launch.final_training.command import resuming_job
from launch.final_training.dataset import dataset_labels
from launch.fingerprints import dataset_fingerprint, file_sha256
from launch.job_specs import MODEL_OUTPUT
from launch.jobs import JobResult, job_output_uri
from launch.lineage import TAG_SWEEP_ID
from launch.pipeline_state import STEPS, StepRecord, step_digest
from launch.variants import VariantStore
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT

if TYPE_CHECKING:
    from launch.pipeline import Pipeline

STEP = "final_training"
#: Job statuses of a submitted attempt that a rerun waits for instead of resubmitting.
_ATTACHABLE = {
    "NotStarted",
    "Queued",
    "Preparing",
    "Provisioning",
    "Starting",
    "Running",
    "Finalizing",
    "Completed",
}


def run(pipeline: Pipeline) -> dict[str, Any]:
    """Resolve final_training.yaml over the selection, then reuse, train or resume the decided variant.

    Returns:
        The job's result (`run_id`, `job_id`, `outputs`, `metrics`), `resumed_from` and the
        `variant` outcome (number, run mode, action, reason, fingerprints).
    """
    chosen = pipeline._need("selection")["selection"]
    preview = resolve(pipeline, chosen, claim=False)
    if preview.action == "skip":
        return _reuse(pipeline, preview)
    _announce_step(pipeline, "running")
    resolved = resolve(pipeline, chosen, claim=True)
    if resolved.action == "skip":
        return _reuse(pipeline, resolved)
    pipeline.announce(
        f"  variant v{resolved.variant} ({resolved.run_mode}: {resolved.action})"
        + (f"; {resolved.reason}" if resolved.reason else "")
    )
    fingerprint = _outcome_fingerprint(resolved)
    pipeline._fingerprints[STEP] = fingerprint
    spec = final_job(
        pipeline._job_context(),
        resolved,
        distribution=pipeline.config.distribution,
        timeout_s=pipeline.config.timeouts[STEP],
    )
    spec = replace(spec, tags={**spec.tags, TAG_SWEEP_ID: chosen["sweep_id"]})
    if resolved.init_checkpoint and resolved.action != "resume":
        pipeline.announce(
            f"  starting from checkpoint {resolved.init_checkpoint} ({resolved.checkpoint_resolved_by})"
        )
    previous, attach = resolved.resume_job, None
    if previous and pipeline.backend.job_status(previous) in _ATTACHABLE:
        attach = previous
    elif previous:
        spec = resuming_job(spec, job_output_uri(previous, MODEL_OUTPUT))
        pipeline.announce(
            f"  resuming the interrupted final training from {job_output_uri(previous, MODEL_OUTPUT)}"
            f"/paths/{CHECKPOINT_DIR}/{LAST_CHECKPOINT} (job {previous})"
        )
    store = VariantStore(Path(resolved.output_dir).parents[2])
    resumed_from = (
        previous if not attach else store.read_record(Path(resolved.output_dir)).metadata.get("resumed_from")
    )

    def submitted(name: str) -> None:
        mark_variant_running(
            resolved,
            run_id=name,
            job_id=name,
            output_dir=job_output_uri(name, MODEL_OUTPUT),
            resumed_from=previous,
        )
        pipeline._record_submitted(STEP, name)

    try:
        result = (
            pipeline.backend.attach(spec, attach)
            if attach
            else pipeline.backend.run(spec, on_submitted=submitted)
        )
        if result.status != "Completed":
            error = JobFailedError(
                f"{spec.stage} job {result.job_id} ended {result.status}:\n{result.error}",
                path=result.log_path or None,
                fix="read the job log, fix the cause and run the pipeline again (the variant is resumed)",
            )
            error.job_result = _plain(result)
            raise error
    except JobFailedError as exc:
        failure = dict(getattr(exc, "job_result", None) or {})
        mark_variant_failed(resolved, error=exc.message[-2000:], run_id=failure.get("run_id"))
        _record(pipeline, fingerprint, "failed", {**failure, "variant": _outcome(resolved)})
        raise
    output = result.outputs[MODEL_OUTPUT]
    payload = {**_plain(result), "resumed_from": resumed_from, "variant": _outcome(resolved)}
    payload = json.loads(json.dumps(payload, sort_keys=True, default=str))
    checkpoint = f"{output}/paths/{CHECKPOINT_DIR}/{LAST_CHECKPOINT if resumed_from else BEST_CHECKPOINT}"
    mark_variant_complete(
        resolved,
        checkpoint=checkpoint,
        metrics=dict(result.metrics),
        run_id=result.run_id,
        job_result=payload,
    )
    _refuse_if_edited(resolved)
    _record(pipeline, fingerprint, "completed", payload)
    pipeline.report.ran.append(STEP)
    _announce_step(pipeline, "done")
    return payload


def resolve(pipeline: Pipeline, chosen: Mapping[str, Any], *, claim: bool) -> ResolvedFinalTraining:
    """Run the final-training loader over the selection with the pipeline's files and dataset (nothing copied)."""
    config = pipeline.config
    best = {
        "backbone": chosen["backbone"],
        "params": chosen["params"],
        "trial_id": chosen.get("trial_id"),
        "checkpoint": chosen.get("checkpoint") or None,
    }
    return load_final_training_config(
        pipeline.state_dir.parent,
        None,
        best,
        {"name": config.experiment},
        [thawed.data for thawed in pipeline._train_configs],
        backend=pipeline.backend.name,
        claim=claim,
        git_commit=pipeline.commit,
        config_path=config.final_training_config,
        dataset=_dataset(pipeline),
        budget={"epochs": config.final_epochs} if config.final_epochs else None,
        mlflow_defaults={"experiment_name": config.experiment, "run_name": f"{config.name}-{STEP}"},
        checkpoint_exists=lambda reference: (
            _locate(pipeline, reference) is not None
            or (pipeline.backend.name != "local" and _job_completed(pipeline, reference))
        ),
        locate=lambda reference: _locate(pipeline, reference),
        backbone_dir=config.backbone.source_dir if config.backbone else None,
    )


def _locate(pipeline: Pipeline, reference: str) -> Path | None:
    """A checkpoint reference as a local file: a path, or a job output of the emulated workspace."""
    if not reference.startswith("azureml://"):
        return Path(reference) if Path(reference).is_file() else None
    resolve_uri = getattr(pipeline.backend.ml_client, "resolve", None)
    if resolve_uri is None:
        return None
    try:
        path = Path(resolve_uri(reference))
    except LaunchError:
        return None
    return path if path.is_file() else None


def _job_completed(pipeline: Pipeline, reference: str) -> bool:
    match = re.match(r"^azureml://jobs/([^/]+)/", reference)
    return bool(match) and pipeline.backend.job_status(match.group(1)) == "Completed"


def _dataset(pipeline: Pipeline) -> ResolvedDataset:
    data = pipeline._need("data_asset")
    local = pipeline.config.dataset_source or dataset_copy(pipeline, data)
    return ResolvedDataset(
        name=str(data["name"]),
        version=str(data["version"]),
        fingerprint=str(data["fingerprint"]),
        local_path=str(local),
        labels=dataset_labels(Path(local)),
    )


def dataset_copy(pipeline: Pipeline, data: Mapping[str, Any]) -> Path:
    """A local copy of a dataset that exists only as a job output (a prepared dataset).

    The final-training loader reads the labels of the dataset it records; the copy is downloaded
    once per data-asset version into the workspace and checked against the registered fingerprint.

    Raises:
        LaunchError: The asset is not a job output (a dataset registered outside the pipeline), or
            the downloaded copy does not hash to the registered fingerprint.
    """
    source = str(data.get("source") or "")
    match = re.match(r"^azureml://jobs/([^/]+)/outputs/([^/]+)/?$", source)
    if match is None:
        raise LaunchError(
            f"final training needs a local copy of data asset {data['name']}:{data['version']}, "
            f"whose source {source or '(unknown)'} is not a job output",
            field="dataset",
            fix="give dataset.source_dir (a local folder) or dataset.prepare, or rerun with --force data_asset",
        )
    target = pipeline.state_dir.parent / "datasets" / f"{data['name']}-{data['version']}"
    folder = target / "named-outputs" / match.group(2)
    if not folder.is_dir():
        folder = pipeline.backend.download_output(match.group(1), match.group(2), target)
    if dataset_fingerprint(folder) != data["fingerprint"]:
        raise LaunchError(
            f"the local copy of data asset {data['name']}:{data['version']} does not match its "
            "registered fingerprint",
            path=folder,
            fix=f"delete {target} to download it again",
        )
    return folder


def _reuse(pipeline: Pipeline, resolved: ResolvedFinalTraining) -> dict[str, Any]:
    """A complete variant decided by the run mode: its recorded outputs, without training."""
    record = VariantStore(Path(resolved.output_dir).parents[2]).read_record(Path(resolved.output_dir))
    meta = record.metadata
    output = str(meta.get("output_dir") or resolved.output_dir)
    result = dict(meta.get("job_result") or {})
    if not result:  # completed outside the pipeline: what the metadata knows
        result = {
            "run_id": meta.get("run_id"),
            "job_id": meta.get("job_id"),
            "status": "Completed",
            "outputs": {MODEL_OUTPUT: output},
            "metrics": dict(meta.get("metrics") or {}),
            "resumed_from": meta.get("resumed_from"),
        }
    result["variant"] = _outcome(resolved)
    result = json.loads(json.dumps(result, sort_keys=True, default=str))
    forced = STEP in pipeline.force
    note = "; --force final_training: run mode reuse_if_exists reuses it (force_new trains a new variant)"
    _announce_step(pipeline, f"reused ({resolved.reason}{note if forced else ''})")
    pipeline._fingerprints[STEP] = _outcome_fingerprint(resolved)
    _record(pipeline, pipeline._fingerprints[STEP], "completed", result)
    pipeline.report.reused.append(STEP)
    return result


def _outcome(resolved: ResolvedFinalTraining) -> dict[str, Any]:
    return {
        "number": resolved.variant,
        "path": resolved.output_dir,
        "run_mode": resolved.run_mode,
        "action": resolved.action,
        "reason": resolved.reason,
        "spec_fp": resolved.spec_fp,
        "exec_fp": resolved.exec_fp,
        "config_sha256": resolved.config_sha256,
        "init_checkpoint": resolved.init_checkpoint,
    }


def _outcome_fingerprint(resolved: ResolvedFinalTraining) -> str:
    payload = {"step": STEP, "variant": resolved.output_dir, "sha": resolved.config_sha256}
    return step_digest(payload)


def _record(pipeline: Pipeline, fingerprint: str, status: str, result: Mapping[str, Any]) -> None:
    pipeline.state.put(STEP, StepRecord(fingerprint, status, dict(result)))
    if status == "completed":
        pipeline._results[STEP] = dict(result)


def _announce_step(pipeline: Pipeline, what: str) -> None:
    pipeline.announce(f"[{STEPS.index(STEP) + 1}/{len(STEPS)}] {STEP}: {what}")


def _refuse_if_edited(resolved: ResolvedFinalTraining) -> None:
    """final_training.yaml changed while its variant was training: stop before conversion and registration.

    The variant stays complete with the file it ran (its metadata records that sha256); converting
    and registering it now would tag the model with the edited file's hash.

    Raises:
        LaunchError: Naming the file, both hashes and the fix.
    """
    path = Path(resolved.config_path) if resolved.config_path else None
    now = file_sha256(path) if path is not None and path.is_file() else ""
    if path is not None and now != resolved.config_sha256:
        raise LaunchError(
            f"{path.name} changed while variant v{resolved.variant} was training (sha256 "
            f"{resolved.config_sha256[:12]} then, {now[:12] or 'deleted'} now): v{resolved.variant} is kept "
            "complete with the file it ran, nothing is converted or registered from it",
            path=path,
            field="final_training",
            fix="run the pipeline again: it resolves the file as it is now (a new variant)",
        )


def _plain(result: JobResult) -> dict[str, Any]:
    return {name: dict(v) if isinstance(v, Mapping) else v for name, v in vars(result).items()}
