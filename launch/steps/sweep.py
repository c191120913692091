"""Steps 5-6: the hyperparameter sweep and the deterministic selection of its best trial."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from launch.errors import JobFailedError
from launch.jobs import TrialResult
from launch.pipeline_state import job_record, spec_key, trial_record
from launch.selection import select_best, write_selection

if TYPE_CHECKING:
    from launch.pipeline import Pipeline


def sweep(pipeline: Pipeline) -> dict[str, Any]:
    """The hyperparameter sweep (objective `val_f1`)."""
    from launch.job_specs import build_sweep
    from launch.search_space import load_sweep_config

    sweep = build_sweep(
        pipeline._job_context(),
        load_sweep_config(pipeline.config.sweep_config),
        distribution=pipeline.config.distribution,
    )
    dry = pipeline._need("dry_run")

    def action() -> dict[str, Any]:
        attached = pipeline._attachable("sweep")
        if attached:
            parent, trials = pipeline.backend.attach_sweep(sweep, attached)
        else:
            parent, trials = pipeline.backend.run_sweep(
                sweep, on_submitted=lambda name: pipeline._record_submitted("sweep", name)
            )
        if parent.status == "Failed" and not any(t.status == "Completed" for t in trials):
            # Recorded as failed, not completed: the next run submits the sweep again instead of
            # reusing a sweep that has nothing to select (a trial timeout on a loaded machine).
            details = "\n".join(
                f"  - {t.trial_id} ({t.status}): {(t.error.strip().splitlines() or ['no error recorded'])[-1]}"
                for t in sorted(trials, key=lambda t: t.trial_id)
            )
            error = JobFailedError(
                f"sweep job {parent.job_id}: no trial completed ({len(trials)} trials):\n{details}",
                path=parent.log_path or None,
                fix="read the trials' logs, fix the cause and run the pipeline again (the sweep runs again)",
            )
            error.job_result = job_record(parent)
            raise error
        if parent.status not in ("Completed", "Failed"):  # failed trials are explained by selection
            error = JobFailedError(
                f"sweep job {parent.job_id} ended {parent.status}:\n{parent.error}",
                path=parent.log_path or None,
                fix="read the sweep's and its trials' logs, fix the cause and run the pipeline again",
            )
            error.job_result = job_record(parent)
            raise error
        return {"parent": job_record(parent), "trials": [trial_record(t) for t in trials]}

    return pipeline._step("sweep", {"spec": spec_key(sweep), "dry_run": dry["run_id"]}, action)


def selection(pipeline: Pipeline) -> dict[str, Any]:
    """Pick the best trial deterministically; the criteria and ranked table go to files and MLflow."""
    sweep = pipeline._need("sweep")
    trials = [TrialResult(**{**t, "params": t["params"], "metrics": t["metrics"]}) for t in sweep["trials"]]
    context = pipeline._job_context()
    from launch.job_specs import build_dry_run

    tags = dict(build_dry_run(context).tags)
    # A registered backbone is named by its asset id; else the last training config that names
    # one (overlays override the base).
    default_backbone = (
        context.backbone.azure_id
        if context.backbone
        else next(
            (
                str(c.get("model.backbone"))
                for c in reversed(pipeline._train_configs)
                if c.get("model.backbone")
            ),
            "",
        )
    )

    def action() -> dict[str, Any]:
        chosen = select_best(
            trials,
            context_tags=tags,
            sweep_id=sweep["parent"]["run_id"],
            default_backbone=default_backbone,
        )
        folder = write_selection(chosen, pipeline.state_dir / f"{pipeline.config.name}_selection")
        pipeline.backend.log_artifacts(sweep["parent"]["run_id"], str(folder), "selection")
        pipeline.announce(
            f"  selected trial {chosen.trial_id}: {chosen.metric}={chosen.value:.4f} {dict(chosen.params)}"
        )
        return {"selection": chosen.to_json(), "folder": str(folder)}

    return pipeline._step("selection", {"sweep": sweep["parent"]["run_id"]}, action)
