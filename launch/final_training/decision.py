"""The one reuse decision of final training: the run mode applied to the variant store.

- `reuse_if_exists`: a complete variant trained from the same final_training.yaml bytes whose
  checkpoint still exists is returned without training; an interrupted one (no live owner) is
  resumed; otherwise a new variant is trained (and the reason is said).
- `force_new`: always a new variant v(n+1); nothing existing is touched.
- `resume_if_incomplete`: the latest interrupted variant is resumed (never one a live process
  owns); otherwise a new variant.
- `continue_from_previous`: a new variant whose weights start from the parent's checkpoint.

A complete variant's metadata is never rewritten. `mark_variant_running/complete/failed` keep the
metadata.json of the decided variant (and the index) up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.checkpoint_resolution import variant_checkpoint
from launch.final_training.resolved import Action, ResolvedFinalTraining
from launch.variant_owners import owned_by_another
from launch.variant_record import (
    INCOMPLETE_STATUSES,
    STATUS_ALLOCATED,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_RUNNING,
    VariantRecord,
)
from launch.variants import VariantStore
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT
from ner_lightning.errors import ConfigError

#: Statuses of a variant whose owner may be training it right now.
ACTIVE_STATUSES = (STATUS_ALLOCATED, STATUS_RUNNING)
#: Says whether a checkpoint reference (a local path or an azureml:// job output) still exists.
CheckpointExists = Callable[[str], bool]


def local_checkpoint_exists(reference: str) -> bool:
    """Default existence check: a local file exists; a job-output reference is trusted."""
    return reference.startswith("azureml://") or Path(reference).is_file()


@dataclass(frozen=True)
class Decision:
    """What the run mode decided for one (spec_fp, exec_fp)."""

    action: Action
    record: VariantRecord | None
    resume_checkpoint: str | None = None
    resume_job: str | None = None
    reason: str = ""


def _reusable(record: VariantRecord, config_sha256: str, exists: CheckpointExists) -> tuple[bool, str]:
    recorded = str(record.metadata.get("config_sha256") or "")
    if config_sha256 and recorded and recorded != config_sha256:
        return False, (
            f"final_training.yaml changed since v{record.variant} was trained "
            f"(sha256 {recorded[:12]} -> {config_sha256[:12]}): training a new variant"
        )
    checkpoint = variant_checkpoint(record)
    if not checkpoint or not exists(checkpoint):
        return False, (
            f"the checkpoint of complete variant v{record.variant} ({checkpoint or 'none recorded'}) no "
            "longer exists: training a new variant"
        )
    return True, f"variant v{record.variant} is complete (run mode reuse_if_exists)"


def _resumable(store: VariantStore, record: VariantRecord, claim: bool, how: str) -> Decision:
    taken = store.acquire(record.path) if claim else record
    last = taken.last_checkpoint
    job = taken.metadata.get("job_id")
    if last is None and not job:
        return Decision("train", taken, reason=f"{how}: v{record.variant} never started; training it")
    return Decision(
        "resume",
        taken,
        resume_checkpoint=str(last) if last is not None else None,
        resume_job=str(job) if job else None,
        reason=f"{how}: resuming interrupted variant v{record.variant}",
    )


def decide(
    store: VariantStore,
    *,
    spec_fp: str,
    exec_fp: str,
    mode: str,
    requested: int | None,
    skip_if_complete: bool,
    claim: bool,
    config_sha256: str,
    checkpoint_exists: CheckpointExists = local_checkpoint_exists,
) -> Decision:
    """Apply the run mode to the variants of one fingerprint pair (see the module docstring).

    Args:
        store: The backend's variant store.
        spec_fp: Spec fingerprint.
        exec_fp: Exec fingerprint.
        mode: Run mode.
        requested: Explicit `variant.number`, or None.
        skip_if_complete: `output.skip_if_complete` (false: never reuse).
        claim: Take ownership of a variant to resume (False only previews).
        config_sha256: sha256 of the final_training.yaml being resolved.
        checkpoint_exists: Existence check of a reused variant's checkpoint.
    """
    variants = store.scan(spec_fp, exec_fp)
    complete = [r for r in variants if r.status == STATUS_COMPLETE]
    incomplete = [
        r
        for r in variants
        if r.status in INCOMPLETE_STATUSES
        and (requested is None or r.variant == requested)
        and not owned_by_another(r)  # a variant a live process trains is never resumed
        and (mode != "reuse_if_exists" or r.metadata.get("config_sha256", config_sha256) == config_sha256)
    ]
    reason = ""
    if mode == "reuse_if_exists":
        chosen = [r for r in complete if requested is None or r.variant == requested]
        if chosen and skip_if_complete:
            ok, reason = _reusable(chosen[-1], config_sha256, checkpoint_exists)
            if ok:
                return Decision("skip", chosen[-1], reason=reason)
        if incomplete and not reason:
            return _resumable(store, incomplete[-1], claim, "reuse_if_exists")
    elif mode == "resume_if_incomplete":
        if requested is not None and skip_if_complete:
            done = next((r for r in complete if r.variant == requested), None)
            if done is not None:
                return Decision("skip", done, reason=f"variant v{requested} is complete")
        if incomplete:
            return _resumable(store, incomplete[-1], claim, "resume_if_incomplete")
        reason = "no interrupted variant to resume: training a new variant"
    return Decision("train", None, reason=reason)


def open_variant(
    store: VariantStore,
    *,
    slug: str,
    spec_fp: str,
    exec_fp: str,
    requested: int | None,
    metadata: Mapping[str, Any],
    config_path: Path | None,
) -> VariantRecord:
    """Allocate the next variant number (or claim the requested one) and write its metadata.

    Raises:
        ConfigError: The requested variant is already complete (it is never overwritten).
    """
    if requested is None:
        return store.allocate(slug, spec_fp, exec_fp, metadata)
    record = store.claim(slug, spec_fp, exec_fp, requested, metadata)
    if record.status == STATUS_COMPLETE:
        raise ConfigError(
            f"variant v{requested} of spec_{spec_fp}_exec_{exec_fp} is already complete",
            path=config_path,
            field="variant.number",
            fix="set variant.number: null to get the next free number, or run.mode: reuse_if_exists",
        )
    return record


# --- Bookkeeping after the decision ---------------------------------------------------------
def _store_of(resolved: ResolvedFinalTraining) -> VariantStore:
    # output_dir = <backend root>/<slug>/spec_.._exec_../v<N>
    return VariantStore(Path(resolved.output_dir).parents[2])


def mark_variant_running(
    resolved: ResolvedFinalTraining,
    *,
    run_id: str | None = None,
    job_id: str | None = None,
    output_dir: str | None = None,
    **facts: Any,
) -> VariantRecord:
    """Record that the variant's job started (status `running`).

    Args:
        resolved: The loader's result.
        run_id: MLflow run id of the job.
        job_id: Backend job id (an interrupted variant is resumed from this job's output).
        output_dir: Where the job writes checkpoints, when not the variant folder itself.
        **facts: Further facts to record (e.g. `resumed_from`: the job this one resumes).
    """
    fields = {"run_id": run_id, "job_id": job_id, "output_dir": output_dir or resolved.output_dir, **facts}
    return _store_of(resolved).update(Path(resolved.output_dir), STATUS_RUNNING, **fields)


def mark_variant_complete(
    resolved: ResolvedFinalTraining,
    *,
    checkpoint: str | None = None,
    metrics: Mapping[str, float] | None = None,
    run_id: str | None = None,
    job_result: Mapping[str, Any] | None = None,
) -> VariantRecord:
    """Record that the variant finished (status `complete`) with its final checkpoint and metrics.

    Args:
        resolved: The loader's result.
        checkpoint: Final checkpoint; None uses `<output_dir>/checkpoints/best.ckpt` or `last.ckpt`.
        metrics: Final metrics (for example `{"val_f1": 0.9}`).
        run_id: MLflow run id, when not recorded yet.
        job_result: The job's result as the pipeline records it (returned when the variant is reused).
    """
    store = _store_of(resolved)
    record = store.read_record(Path(resolved.output_dir))
    if checkpoint is None:
        output_dir = Path(str(record.metadata.get("output_dir") or record.path)) / CHECKPOINT_DIR
        found = [
            output_dir / name for name in (BEST_CHECKPOINT, LAST_CHECKPOINT) if (output_dir / name).is_file()
        ]
        checkpoint = str(found[0]) if found else None
    fields: dict[str, Any] = {"checkpoint": checkpoint, "metrics": dict(metrics or {}), "error": None}
    if run_id is not None:
        fields["run_id"] = run_id
    if job_result is not None:
        fields["job_result"] = dict(job_result)
    return store.update(record.path, STATUS_COMPLETE, **fields)


def mark_variant_failed(
    resolved: ResolvedFinalTraining, *, error: str, run_id: str | None = None
) -> VariantRecord:
    """Record that the variant's job failed (status `failed`); it is resumed by the next run."""
    fields: dict[str, Any] = {"error": error}
    if run_id is not None:
        fields["run_id"] = run_id
    return _store_of(resolved).update(Path(resolved.output_dir), STATUS_FAILED, **fields)
