"""Steps 1-4: validate the infrastructure, register the environment and the data asset, dry run.

Each takes the `Pipeline` (its config, backend and `_step` bookkeeping) and returns the step's result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.errors import JobFailedError
from launch.fingerprints import dataset_fingerprint, folder_fingerprint
from launch.job_specs import MODEL_OUTPUT
from launch.jobs import AssetRef, CommandJobSpec, DataAssetSpec, JobInput
from launch.pipeline_state import STEPS, job_record, spec_key
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    PRIMARY_METRIC,
    TAG_GIT_COMMIT,
)

if TYPE_CHECKING:
    from launch.pipeline import Pipeline


def validate(pipeline: Pipeline) -> dict[str, Any]:
    """Check the backend's infrastructure (never creates anything); always runs."""
    pipeline.announce(f"[1/{len(STEPS)}] validate: checking the {pipeline.backend.name} backend")
    pipeline.backend.validate_infrastructure()
    pipeline._results["validate"] = {"backend": pipeline.backend.name}
    return pipeline._results["validate"]


def environment(pipeline: Pipeline) -> dict[str, Any]:
    """Register (or reuse) the environment version every job runs in (before any job)."""
    from launch.azure.environment import environment_fingerprint, load_environment

    spec = load_environment(pipeline.config.environment)
    fingerprint = environment_fingerprint(spec)

    def action() -> dict[str, Any]:
        ref, reused = pipeline.backend.ensure_environment(spec, fingerprint)
        pipeline.announce(f"  environment {ref.name}:{ref.version} {'reused' if reused else 'registered'}")
        return {"name": ref.name, "version": ref.version, "fingerprint": fingerprint, "reused": reused}

    return pipeline._step(
        "environment", {"name": spec.name, "version": spec.version, "fp": fingerprint}, action
    )


def data_asset(pipeline: Pipeline) -> dict[str, Any]:
    """Prepare the dataset when configured (a job whose output is registered by URI), register
    (or reuse) the data asset version, and the backbone folder when the config names one."""
    cfg = pipeline.config
    env = pipeline._need("environment")

    def action() -> dict[str, Any]:
        if cfg.dataset_source is None and not cfg.prepare_command:
            ref = pipeline.backend.registered_data_asset(cfg.dataset_name, cfg.dataset_version)
            source, fingerprint = ref.azure_id, ref.fingerprint
        elif cfg.prepare_command:
            source, fingerprint = _prepare_dataset(pipeline, AssetRef(env["name"], env["version"]))
        else:
            assert cfg.dataset_source is not None
            source, fingerprint = str(cfg.dataset_source), dataset_fingerprint(cfg.dataset_source)
        if source.startswith("azureml:") and not source.startswith("azureml://"):
            ref, reused = AssetRef(cfg.dataset_name, cfg.dataset_version, fingerprint), True
        else:
            spec = DataAssetSpec(cfg.dataset_name, cfg.dataset_version, source)
            ref, reused = pipeline.backend.ensure_data_asset(spec, fingerprint)
        pipeline.announce(f"  data asset {ref.name}:{ref.version} {'reused' if reused else 'registered'}")
        result: dict[str, Any] = {
            "name": ref.name,
            "version": ref.version,
            "fingerprint": fingerprint,
            "reused": reused,
            "source": source,
        }
        if cfg.backbone is not None:
            backbone_fp = folder_fingerprint(cfg.backbone.source_dir)
            bref, breused = pipeline.backend.ensure_folder_asset(cfg.backbone, backbone_fp)
            pipeline.announce(
                f"  backbone {bref.name}:{bref.version} {'reused' if breused else 'registered'}"
            )
            result["backbone"] = {"name": bref.name, "version": bref.version, "fingerprint": backbone_fp}
        return result

    inputs = {
        # 2: the result records the asset's source (final training downloads a prepared dataset).
        "result_format": 2,
        "name": cfg.dataset_name,
        "version": cfg.dataset_version,
        "source": dataset_fingerprint(cfg.dataset_source) if cfg.dataset_source else cfg.prepare_command,
        "prepare_inputs": {k: folder_fingerprint(v) for k, v in cfg.prepare_inputs.items()},
        "environment": env["fingerprint"] if cfg.prepare_command else None,
        "backbone": [cfg.backbone.name, cfg.backbone.version, folder_fingerprint(cfg.backbone.source_dir)]
        if cfg.backbone
        else None,
    }
    return pipeline._step("data_asset", inputs, action)


def _prepare_dataset(pipeline: Pipeline, environment: AssetRef) -> tuple[str, str]:
    """Run the data preparation job; returns its output's `azureml://` URI and content fingerprint.

    The output is downloaded once to be validated and fingerprinted locally (the same checks a
    local dataset folder gets); the registered asset points at the job output itself.
    """
    from launch.azure.assets import validate_source_folder

    spec = CommandJobSpec(
        name="prepare_data",
        stage="data_preparation",
        command=pipeline.config.prepare_command or "",
        inputs={
            name: JobInput("uri_folder" if path.is_dir() else "uri_file", str(path))
            for name, path in pipeline.config.prepare_inputs.items()
        },
        outputs=("data",),
        compute="cpu",
        environment=environment,
        experiment_name=pipeline.config.experiment,
        display_name=f"{pipeline.config.name}-prepare_data",
        tags={TAG_GIT_COMMIT: pipeline.commit},
        timeout_s=pipeline.config.timeouts["data_preparation"],
    )
    result = pipeline._run_job(spec, "data_asset")
    with tempfile.TemporaryDirectory(prefix="ner-prepared-") as scratch:
        folder = pipeline.backend.download_output(result.job_id, "data", Path(scratch))
        validate_source_folder(folder)
        return result.outputs["data"], dataset_fingerprint(folder)


def dry_run(pipeline: Pipeline) -> dict[str, Any]:
    """One short training job; it must load the data, log `val_f1` and write a checkpoint."""
    from launch.job_specs import build_dry_run

    spec = build_dry_run(
        pipeline._job_context(),
        limit_batches=pipeline.config.dry_run_limit_batches,
        timeout_s=pipeline.config.timeouts["dry_run"],
    )

    def action() -> dict[str, Any]:
        result = pipeline._run_job(spec, "dry_run")
        problems = []
        if PRIMARY_METRIC not in result.metrics:
            problems.append(f"the run logged no `{PRIMARY_METRIC}` (logging is broken)")
        with tempfile.TemporaryDirectory(prefix="ner-dry-run-") as scratch:
            output = pipeline.backend.download_output(result.job_id, MODEL_OUTPUT, Path(scratch))
            if not any(
                (output / CHECKPOINT_DIR / name).is_file() for name in (LAST_CHECKPOINT, BEST_CHECKPOINT)
            ):
                problems.append(
                    f"no checkpoint was written under {result.outputs[MODEL_OUTPUT]}/{CHECKPOINT_DIR}"
                )
        if problems:
            raise JobFailedError(
                f"the dry run {result.job_id} completed but failed verification: {'; '.join(problems)}",
                path=result.log_path or None,
                fix="read the job log; the sweep is not started until the dry run passes",
            )
        pipeline.announce(
            f"  dry run verified: data loaded, {PRIMARY_METRIC}={result.metrics[PRIMARY_METRIC]:.4f}, "
            "checkpoint written"
        )
        return job_record(result)

    return pipeline._step("dry_run", {"spec": spec_key(spec)}, action)
