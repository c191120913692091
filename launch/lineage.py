"""Which model folders may be registered, and the lineage tags every registered version carries.

Only the int8 ONNX folder written by the conversion job of a final-training run is registrable
(P1-5). Both backends call `check_registration` before touching their registry, so a sweep
trial, a dry run or a raw checkpoint is refused the same way on Azure ML and locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from launch.errors import LaunchError
from launch.files import read_json
from launch.jobs import ModelRegistration
from ner_lightning.contract import (
    MODEL_METADATA_FILE,
    ONNX_MODEL_FILE,
    SMOKE_REPORT_FILE,
    STAGE_FINAL,
    STAGE_PROD,
    TAG_DATASET_VERSION,
    TAG_STAGE,
)

#: MLflow run id of the final-training run the model comes from.
TAG_FINAL_RUN_ID: Final = "lineage.final_run_id"
#: MLflow run id of the conversion run that wrote the folder.
TAG_CONVERSION_RUN_ID: Final = "lineage.conversion_run_id"
#: Parent run id of the sweep the configuration was selected from.
TAG_SWEEP_ID: Final = "lineage.sweep_id"
#: Name of the pipeline (config `name`) that owns a registered model name.
TAG_PIPELINE: Final = "lineage.pipeline"
TAG_BACKBONE: Final = "backbone"
#: sha256 over the registered folder's files: the same content is never registered twice.
TAG_CONTENT_SHA256: Final = "content_sha256"
#: On a version taken out of production by a newer one: the version that replaced it.
TAG_SUPERSEDED_BY: Final = "superseded_by"
#: Stage of a registered version that a newer version of its lineage replaced.
STAGE_ARCHIVED: Final = "archived"
TAG_METRIC: Final = "metric"
TAG_METRIC_VALUE: Final = "metric_value"

#: Tags a registration must carry (besides `config_sha256.*` and `git_commit`).
REQUIRED_TAGS: Final = (
    TAG_STAGE,
    TAG_DATASET_VERSION,
    TAG_BACKBONE,
    TAG_METRIC,
    TAG_METRIC_VALUE,
    TAG_FINAL_RUN_ID,
    TAG_SWEEP_ID,
    TAG_PIPELINE,
)


def check_registration(registration: ModelRegistration, final_run_tags: Mapping[str, str] | None) -> None:
    """Refuse a registration whose folder or lineage is not a converted final-training model.

    Args:
        registration: What is about to be registered.
        final_run_tags: Tags of the run named by `lineage.final_run_id` (None when it does not exist).

    Raises:
        LaunchError: Naming what is missing or wrong.
    """
    missing = [tag for tag in REQUIRED_TAGS if not registration.tags.get(tag)]
    if missing:
        raise LaunchError(
            f"model {registration.name!r} is missing lineage tags: {', '.join(missing)}",
            field="tags",
            fix="register through the pipeline's register step, which sets them",
        )
    if registration.tags[TAG_STAGE] != STAGE_PROD:
        raise LaunchError(
            f"registered models carry stage={STAGE_PROD}, not {registration.tags[TAG_STAGE]!r}",
            field=TAG_STAGE,
        )
    run_id = registration.tags[TAG_FINAL_RUN_ID]
    if final_run_tags is None:
        raise LaunchError(
            f"lineage run {run_id} does not exist",
            field=TAG_FINAL_RUN_ID,
            fix="register only the conversion output of a final-training run",
        )
    stage = final_run_tags.get(TAG_STAGE, "<none>")
    if stage != STAGE_FINAL:
        raise LaunchError(
            f"run {run_id} is a {stage!r} run, not a final-training run; only the converted output of "
            "final training may be registered (sweep trials, dry runs and checkpoints never are)",
            field=TAG_FINAL_RUN_ID,
            fix="run the final_training and conversion steps and register their output",
        )
    folder = Path(registration.path)
    if not folder.is_dir():
        raise LaunchError("the model folder to register does not exist", path=folder)
    checkpoints = sorted(p.name for p in folder.rglob("*.ckpt"))
    if checkpoints:
        raise LaunchError(
            f"the folder holds training checkpoints ({', '.join(checkpoints)}); checkpoints are never registered",
            path=folder,
            fix="register the conversion job's int8 ONNX output folder",
        )
    for required in (ONNX_MODEL_FILE, MODEL_METADATA_FILE, SMOKE_REPORT_FILE):
        if not (folder / required).is_file():
            raise LaunchError(
                f"{required} is missing: this is not the output of the int8 conversion job",
                path=folder,
                fix="register the conversion job's output folder (it holds the smoke report)",
            )
    metadata = read_json(
        folder / MODEL_METADATA_FILE,
        what=f"{MODEL_METADATA_FILE} of the model folder",
        fix="register the conversion job's output folder as it wrote it",
    )
    if not isinstance(metadata, dict):
        raise LaunchError(
            f"{MODEL_METADATA_FILE} is not a JSON object",
            path=folder / MODEL_METADATA_FILE,
            fix="register the conversion job's output folder as it wrote it",
        )
    quantization = metadata.get("quantization")
    if isinstance(quantization, str) and quantization.lower() not in ("int8", "qint8", "dynamic_int8"):
        raise LaunchError(
            f"the model is quantized as {quantization!r}, not int8",
            path=folder / MODEL_METADATA_FILE,
            field="quantization",
            fix="convert it with the conversion job",
        )
