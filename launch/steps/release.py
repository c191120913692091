"""Steps 8-9: convert the final model to int8 ONNX and register it with its lineage."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from launch.job_specs import MODEL_INPUT, MODEL_OUTPUT
from launch.jobs import JobInput, ModelRegistration
from launch.lineage import (
    TAG_BACKBONE,
    TAG_CONVERSION_RUN_ID,
    TAG_FINAL_RUN_ID,
    TAG_METRIC,
    TAG_METRIC_VALUE,
    TAG_PIPELINE,
    TAG_SWEEP_ID,
)
from launch.pipeline_state import job_record, spec_key
from launch.steps.reuse import OUTPUT_SHA256
from ner_lightning.contract import (
    CHECKPOINT_DIR,
    CONVERSION_GATE_METRICS,
    CONVERSION_RECIPE_PARAMS,
    LAST_CHECKPOINT,
    PRIMARY_METRIC,
    STAGE_PROD,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_GIT_COMMIT,
    TAG_STAGE,
)

if TYPE_CHECKING:
    from launch.pipeline import Pipeline


def conversion(pipeline: Pipeline) -> dict[str, Any]:
    """Convert the final training's output to an int8 ONNX model folder on the CPU cluster."""
    from launch.job_specs import build_conversion

    final = pipeline._need("final_training")
    output = final["outputs"][MODEL_OUTPUT]
    spec = build_conversion(
        pipeline._job_context(),
        JobInput("job_output", output),
        timeout_s=pipeline.config.timeouts["conversion"],
    )
    spec = replace(spec, tags={**spec.tags, TAG_FINAL_RUN_ID: final["run_id"]})
    if final.get("resumed_from"):
        # A resumed final training may train no epoch in its own folder (killed after its last
        # epoch), so only its last.ckpt is sure to exist; final training keeps the last epoch
        # (`checkpoint.monitor: null` on train + validation), so it holds the final weights.
        spec = replace(
            spec,
            command=f"{spec.command} --checkpoint ${{{{inputs.{MODEL_INPUT}}}}}/{CHECKPOINT_DIR}/{LAST_CHECKPOINT}",
        )

    def action() -> dict[str, Any]:
        result = job_record(pipeline._run_job(spec, "conversion"))
        # What a later run checks before reusing the model folder (launch/steps/reuse.py).
        result[OUTPUT_SHA256] = pipeline.backend.output_fingerprint(result["job_id"], MODEL_OUTPUT)
        return result

    return pipeline._step("conversion", {"spec": spec_key(spec), "final": final["run_id"]}, action)


def registration(pipeline: Pipeline) -> dict[str, Any]:
    """Register the int8 ONNX folder with stage=prod and its lineage (checked, never overwriting)."""
    final, conversion = pipeline._need("final_training"), pipeline._need("conversion")
    chosen = pipeline._need("selection")["selection"]
    data = pipeline._need("data_asset")
    hashes = {k: v for k, v in _job_context_tags(pipeline).items() if k.startswith(TAG_CONFIG_SHA256_PREFIX)}
    value = final["metrics"].get(PRIMARY_METRIC, chosen["value"])
    tags = {
        TAG_STAGE: STAGE_PROD,
        TAG_DATASET_NAME: data["name"],
        TAG_DATASET_VERSION: data["version"],
        TAG_BACKBONE: chosen["backbone"],
        TAG_METRIC: PRIMARY_METRIC,
        TAG_METRIC_VALUE: f"{value:.6f}",
        TAG_FINAL_RUN_ID: final["run_id"],
        TAG_CONVERSION_RUN_ID: conversion["run_id"],
        TAG_SWEEP_ID: chosen["sweep_id"],
        TAG_PIPELINE: pipeline.config.name,
        TAG_GIT_COMMIT: pipeline.commit,
        **hashes,
    }
    # The held-out score of the registered int8 model itself (the final run's val_f1 is not held out),
    # the int8 gate's figures and the recipe the conversion chose.
    for name in CONVERSION_GATE_METRICS:
        if name in conversion.get("metrics", {}):
            tags[name] = f"{conversion['metrics'][name]:.6f}"
    for name in CONVERSION_RECIPE_PARAMS:
        if name in conversion.get("params", {}):
            tags[name] = str(conversion["params"][name])
    folder = conversion["outputs"][MODEL_OUTPUT]
    registration = ModelRegistration(
        pipeline.config.model_name, folder, tags, f"{pipeline.config.name}: {PRIMARY_METRIC}={value:.4f}"
    )

    def action() -> dict[str, Any]:
        model = pipeline.backend.register_model(registration)
        how = "already registered (reused)" if model.reused else "registered"
        pipeline.announce(f"  model {model.name} version {model.version} {how}")
        return {
            "name": model.name,
            "version": model.version,
            "reused": model.reused,
            "tags": dict(model.tags),
        }

    return pipeline._step(
        "registration",
        {"final": final["run_id"], "conversion": conversion["run_id"], "name": pipeline.config.model_name},
        action,
    )


def _job_context_tags(pipeline: Pipeline) -> dict[str, str]:
    return pipeline._job_context().config_tags(final=True)
