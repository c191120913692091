"""Tables of a pipeline's results, for the notebook (read-only, torch-free; charts: `launch.charts`).

Every function reads what the pipeline already recorded (the selection, the state file's job
results, the workspace's MLflow store, the registered model's tags) and returns a
`pandas.DataFrame`; none submits, trains or writes.

The final-training decision is previewed through `preview_final_training` and shown by
`describe_final_training`: the one place that knows how the pipeline resolves
`final_training.yaml` before it submits.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from launch.lineage import TAG_FINAL_RUN_ID
from ner_lightning.contract import (
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    INT8_F1_DROP,
    INT8_F1_DROP_CI_HIGH,
    INT8_F1_DROP_CI_LOW,
    INT8_RECIPE,
    PRIMARY_METRIC,
    TAG_STAGE,
    TEST_ENTITY_TABLE,
    TRAIN_LOSS,
)

#: Sweep parameters that choose the head, by name (`head`) or by the deprecated flag (`use_crf`).
HEAD_PARAMS = ("head", "model.head", "use_crf", "model.use_crf")
#: MLflow params of a training run that name its head (LightningCLI logs the resolved class path).
RUN_HEAD_PARAMS = ("head/class_path", "head", "use_crf")
#: The learning rate as a sweep parameter and as a training run's MLflow param.
LEARNING_RATE = "learning_rate"
#: What each final-training action means for the job about to be submitted.
ACTIONS = {
    "train": "train a new variant",
    "skip": "reuse the complete variant (no training)",
    "resume": "resume the interrupted variant from its last.ckpt",
}
#: MLflow's switch for its artifact download progress bar.
PROGRESS_BAR_VARIABLE = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
#: Registered-model tags shown next to the per-type table (the registered int8 model's own scores).
MODEL_TAGS = (
    TAG_STAGE,
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    INT8_F1_DROP,
    INT8_F1_DROP_CI_LOW,
    INT8_F1_DROP_CI_HIGH,
    INT8_RECIPE,
    TAG_FINAL_RUN_ID,
)


# --- the sweep -------------------------------------------------------------------------------
def head_name(value: Any) -> str:
    """`crf` or `softmax` (or a custom head's name) from a sweep or MLflow head param.

    Accepts a head name (`crf`), a class path (`ner_lightning.model.heads.CRFHead`) or the
    deprecated `use_crf` flag (`True`, `"false"`).
    """
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):
        return "crf" if str(value).lower() == "true" else "softmax"
    name = str(value).rsplit(".", 1)[-1]
    return re.sub(r"head$", "", name, flags=re.IGNORECASE).lower() or name.lower()


def _head_of(params: Mapping[str, Any]) -> str | None:
    for key in (*HEAD_PARAMS, *RUN_HEAD_PARAMS):
        if params.get(key) not in (None, "", "None"):
            return head_name(params[key])
    return None


def _logged_params(client: Any, run_id: str) -> Mapping[str, str]:
    """The MLflow params of a run; none for a trial that failed before its run existed."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id).data.params
    except MlflowException:
        return {}


def ranked_trials(selection: Mapping[str, Any], client: Any = None) -> pd.DataFrame:
    """The sweep's ranked trials, one row per trial, best first (failed and pruned trials last).

    Columns: `rank`, `trial_id`, the metric (`val_f1`), `learning_rate`, `head`, the other searched
    parameters, `status`, `selected`, `run_id`, `error`. A learning rate or head that was not
    searched is read from the trial's MLflow run params when `client` is given.

    Args:
        selection: The selection step's `selection` (what `selection.json` holds).
        client: An `MlflowClient` on the workspace's store, or None.
    """
    metric = selection.get("metric", PRIMARY_METRIC)
    rows = []
    for row in selection["ranked"]:
        params = row["params"]
        params = json.loads(params) if isinstance(params, str) else dict(params)
        head = _head_of(params)
        params = {k: v for k, v in params.items() if k not in HEAD_PARAMS}
        if client is not None and (head is None or LEARNING_RATE not in params):
            logged = _logged_params(client, row["run_id"])
            head = head or _head_of(logged)
            params.setdefault(LEARNING_RATE, logged.get(LEARNING_RATE))
        rows.append(
            {
                "rank": row["rank"],
                "trial_id": row["trial_id"],
                metric: row["metric"],
                **params,
                "head": head,
                "status": row["status"],
                "selected": row["trial_id"] == selection.get("trial_id"),
                "run_id": row["run_id"],
                "error": row["error"],
            }
        )
    table = pd.DataFrame(rows)
    table["rank"] = table["rank"].astype("Int64")
    table[metric] = pd.to_numeric(table[metric], errors="coerce")
    if LEARNING_RATE in table:
        table[LEARNING_RATE] = pd.to_numeric(table[LEARNING_RATE], errors="coerce")
    first = ["rank", "trial_id", metric, *([LEARNING_RATE] if LEARNING_RATE in table else []), "head"]
    return table[first + [c for c in table.columns if c not in first]]


# --- the final training run ------------------------------------------------------------------
def metric_history(
    client: Any, run_id: str, metrics: Iterable[str] = (TRAIN_LOSS, PRIMARY_METRIC)
) -> pd.DataFrame:
    """Every logged value of `metrics` in run `run_id`: columns `metric`, `step`, `value`, `timestamp`.

    Args:
        client: An `MlflowClient` on the workspace's store.
        run_id: The run (the final training job's run id).
        metrics: Metric names; one the run never logged has no rows.
    """
    rows = [
        {"metric": name, "step": point.step, "value": point.value, "timestamp": point.timestamp}
        for name in metrics
        for point in client.get_metric_history(run_id, name)
    ]
    return pd.DataFrame(rows, columns=["metric", "step", "value", "timestamp"]).sort_values(
        ["metric", "step", "timestamp"], ignore_index=True
    )


# --- the registered model --------------------------------------------------------------------
def entity_scores(client: Any, run_id: str) -> pd.DataFrame:
    """Per-entity-type precision, recall, F1 and support of a training run, plus the micro row.

    Read from the run's `test_entity_scores.json` table (the held-out test split, scored on the
    best checkpoint after training); a run without a test split falls back to its last per-type F1
    metrics (`test_f1_<type>`, else `val_f1_<type>`). `DataFrame.attrs["source"]` says which.

    Args:
        client: An `MlflowClient` on the workspace's store.
        run_id: The training run (for the registered model: its `lineage.final_run_id` tag).
    """
    if any(item.path == TEST_ENTITY_TABLE for item in client.list_artifacts(run_id)):
        payload = json.loads(_download(client, run_id, TEST_ENTITY_TABLE))
        table = pd.DataFrame(payload["data"], columns=payload["columns"]).set_index("type")
        table.attrs["source"] = f"{TEST_ENTITY_TABLE} of run {run_id} (held-out test split)"
        return table
    metrics = client.get_run(run_id).data.metrics
    for split in ("test", "val"):
        prefix = f"{split}_f1_"
        per_type = {name[len(prefix) :]: value for name, value in metrics.items() if name.startswith(prefix)}
        if per_type:
            micro = metrics.get("test_f1" if split == "test" else PRIMARY_METRIC, math.nan)
            table = pd.DataFrame({"f1": {**dict(sorted(per_type.items())), "micro": micro}})
            table.index.name = "type"
            table.attrs["source"] = f"{prefix}<type> metrics of run {run_id}"
            return table
    table = pd.DataFrame({"f1": pd.Series(dtype=float)})
    table.index.name = "type"
    table.attrs["source"] = f"run {run_id} logged no per-type scores"
    return table


def _download(client: Any, run_id: str, artifact: str) -> str:
    """The text of one run artifact, without MLflow's progress bar in the notebook."""
    previous = os.environ.get(PROGRESS_BAR_VARIABLE)
    os.environ[PROGRESS_BAR_VARIABLE] = "false"
    try:
        with tempfile.TemporaryDirectory(prefix="ner-report-") as scratch:
            return Path(client.download_artifacts(run_id, artifact, scratch)).read_text(encoding="utf-8")
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_BAR_VARIABLE, None)
        else:
            os.environ[PROGRESS_BAR_VARIABLE] = previous


def model_table(model: Mapping[str, Any]) -> pd.DataFrame:
    """The registered model version and its held-out int8/fp32 scores, one row per field.

    Args:
        model: The registration step's result (`name`, `version`, `tags`).
    """
    tags = model.get("tags", {})
    rows = {"model": f"{model['name']}:{model['version']}"}
    rows.update({name: tags[name] for name in MODEL_TAGS if name in tags})
    table = pd.DataFrame({"value": rows})
    table.index.name = "field"
    return table


# --- jobs ------------------------------------------------------------------------------------
def _jobs_of(results: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(step, job name) of every job the state records, in pipeline order."""
    jobs = []
    source = str(results.get("data_asset", {}).get("source") or "")
    prepared = re.match(r"^azureml://jobs/([^/]+)/outputs/", source)
    if prepared:
        jobs.append(("data_asset (prepare)", prepared.group(1)))
    if results.get("dry_run", {}).get("job_id"):
        jobs.append(("dry_run", results["dry_run"]["job_id"]))
    sweep = results.get("sweep", {})
    if sweep.get("parent", {}).get("job_id"):
        jobs.append(("sweep", sweep["parent"]["job_id"]))
    # A trial's job name is its MLflow run id (Azure ML's runtime contract, kept by the emulator).
    jobs += [(f"sweep trial {i}", trial["run_id"]) for i, trial in enumerate(sweep.get("trials", []), 1)]
    for step in ("final_training", "conversion"):
        if results.get(step, {}).get("job_id"):
            jobs.append((step, results[step]["job_id"]))
    return jobs


def job_links(results: Mapping[str, Mapping[str, Any]], ml_client: Any) -> pd.DataFrame:
    """Every job of the pipeline with its status and link (Azure ML studio, or the emulator's log).

    On the emulated workspace a `folder` column gives the job's folder (`job.yaml`, `status.json`,
    `user_logs/`, `outputs/`). Show it with links: `HTML(table.to_html(render_links=True))`.

    Args:
        results: Step -> result of the completed steps (`PipelineSession.results()`).
        ml_client: The workspace's `MLClient` (or `EmulatedMLClient`).
    """
    from azure.core.exceptions import ResourceNotFoundError

    from launch.local import EmulatedMLClient

    emulated = isinstance(ml_client, EmulatedMLClient)
    rows = []
    for step, name in _jobs_of(results):
        try:
            job = ml_client.jobs.get(name)
            status, link = str(job.status), str(getattr(job, "studio_url", "") or "")
        except ResourceNotFoundError:
            status, link = "not found", ""
        row = {"step": step, "job": name, "status": status, "link": link}
        if emulated:
            row["folder"] = str(ml_client.workspace.jobs_dir / name)
        rows.append(row)
    return pd.DataFrame(rows, columns=["step", "job", "status", "link", *(["folder"] if emulated else [])])


# --- the final-training decision -------------------------------------------------------------
def preview_final_training(pipeline: Any) -> Any:
    """The final-training decision the pipeline's next `final_training()` acts on, not claimed.

    Resolves `final_training.yaml` over the selected trial as the pipeline does (same loader, same
    inputs, `claim=False`: no variant folder is created), through the step's own
    `launch.steps.final_training.resolve`. Call it inside `with session as pipeline`.

    Args:
        pipeline: A `launch.pipeline.Pipeline` whose selection step has completed.

    Returns:
        A `launch.final_training.ResolvedFinalTraining`.
    """
    from launch.steps.final_training import resolve

    return resolve(pipeline, pipeline._need("selection")["selection"], claim=False)


def _short(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def describe_final_training(resolved: Any) -> pd.DataFrame:
    """The resolved final-training decision as a two-column table (setting, value).

    What will happen (`decision`), under which run mode, which variant and fingerprints
    (`spec_fp`, `exec_fp`), where the weights start from (resumed checkpoint, initial checkpoint
    and how it was found, or the pretrained backbone), then the settings the fingerprints cover.

    Args:
        resolved: A `launch.final_training.ResolvedFinalTraining` (`preview_final_training`).
    """
    if resolved.resume_checkpoint:
        starts_from = f"resume {resolved.resume_checkpoint}"
    elif resolved.init_checkpoint:
        starts_from = f"{resolved.init_checkpoint} (found by {resolved.checkpoint_resolved_by or 'config'})"
    else:
        starts_from = f"pretrained backbone {resolved.backbone}"
    hyperparameters = {k: v for k, v in resolved.hyperparameters.items() if v is not None}
    dataset = resolved.dataset
    rows = {
        "decision": ACTIONS.get(resolved.action, resolved.action),
        "run mode": resolved.run_mode,
        "variant": f"v{resolved.variant}",
        "spec_fp": resolved.spec_fp,
        "exec_fp": resolved.exec_fp,
        "starts from": starts_from,
        "source": resolved.source_type,
        "parent": _short(resolved.parent),
        "complete checkpoint": _short(resolved.checkpoint),
        "backbone": resolved.backbone,
        "head": "crf" if resolved.use_crf else head_name(hyperparameters.get("head") or "softmax"),
        "seed": str(resolved.seed),
        "hyperparameters": _short(hyperparameters),
        "dataset": f"{dataset.name}:{dataset.version} (fingerprint {dataset.fingerprint[:12]})",
        "variant folder": resolved.output_dir,
        "MLflow run": f"{resolved.mlflow_experiment} / {resolved.mlflow_run_name}",
        "config": f"{resolved.config_path or '-'} (sha256 {resolved.config_sha256[:12] or '-'})",
    }
    table = pd.DataFrame({"value": rows})
    table.index.name = "setting"
    return table
