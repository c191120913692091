"""`ner-pipeline` and the orchestration: config errors, lineage refusals, concurrency, and the
smoke preset end to end (acceptance 1-4, 6) once the training and conversion jobs are available."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import mlflow.artifacts
import onnx
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from launch.cli import main
from launch.errors import LaunchError
from launch.jobs import ModelRegistration
from launch.lineage import (
    TAG_BACKBONE,
    TAG_CONVERSION_RUN_ID,
    TAG_FINAL_RUN_ID,
    TAG_METRIC,
    TAG_METRIC_VALUE,
    TAG_PIPELINE,
    TAG_SWEEP_ID,
)
from launch.local import LocalBackend
from launch.local.runner import PARENT_RUN_TAG
from launch.pipeline import dataset_fingerprint, load_pipeline_config
from launch.search_space import load_sweep_config
from launch.selection import RANKED_FILE, SELECTION_FILE
from ner_lightning.contract import (
    CONVERSION_GATE_METRICS,
    CONVERSION_RECIPE_PARAMS,
    HELDOUT_F1_INT8,
    HELDOUT_GOLD_ENTITIES,
    MODEL_METADATA_FILE,
    ONNX_MODEL_FILE,
    PRIMARY_METRIC,
    SMOKE_REPORT_FILE,
    STAGE_CONVERSION,
    STAGE_DRY_RUN,
    STAGE_FINAL,
    STAGE_PROD,
    STAGE_SWEEP,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_GIT_COMMIT,
    TAG_PRODUCTION_ELIGIBLE,
    TAG_STAGE,
)
from tests.conftest import REPO_ROOT
from tests.pipeline.lock_holder import workspace_locked_elsewhere

SMOKE = REPO_ROOT / "configs" / "pipeline" / "smoke.yaml"
TOY_DATASET = REPO_ROOT / "tests" / "fixtures" / "toy_dataset"
NOTEBOOK = REPO_ROOT / "notebooks" / "01_orchestrate_training.ipynb"


# --- config and CLI errors ---------------------------------------------------------------
def test_missing_key_names_the_key_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = SMOKE.read_text().replace("  model_name: ner-smoke\n", "  other: x\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert "[registration.model_name]: missing required key `registration.model_name`" in err
    assert re.search(r"pipeline\.yaml:\d+", err) and "Traceback" not in err


def test_missing_config_file_and_unknown_force_step(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--config", str(SMOKE), "--force", "bogus"])


def test_non_writable_workspace_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--config", str(SMOKE), "--workspace", str(blocker / "ws")]) == 2
    assert "the local workspace folder is not writable" in capsys.readouterr().err


def test_second_concurrent_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    workspace = tmp_path / "ws"
    with workspace_locked_elsewhere(workspace):
        assert main(["run", "--config", str(SMOKE), "--workspace", str(workspace)]) == 2
        assert "another pipeline run is using this workspace" in capsys.readouterr().err
    assert not (workspace / "pipelines").exists()  # the refused run wrote no state


# --- registration lineage ----------------------------------------------------------------
def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "ner_model.json").write_text(json.dumps({"quantization": "int8"}))
    (folder / "smoke_report.json").write_text("{}")
    return folder


def _registration(
    backend: LocalBackend, tmp_path: Path, stage: str, pipeline: str = "smoke"
) -> ModelRegistration:
    client = MlflowClient(backend.workspace.tracking_uri)
    experiment = backend.workspace.experiment_id(client, "exp")
    run = client.create_run(experiment, tags={"stage": stage}).info.run_id
    tags = {
        "stage": "prod",
        "dataset_version": "1",
        "dataset_name": "toy",
        TAG_BACKBONE: "tiny",
        TAG_METRIC: "val_f1",
        TAG_METRIC_VALUE: "0.9",
        TAG_FINAL_RUN_ID: run,
        TAG_CONVERSION_RUN_ID: run,
        TAG_SWEEP_ID: "sweep",
        TAG_PIPELINE: pipeline,
    }
    folder = tmp_path / "model" if (tmp_path / "model").exists() else _model_folder(tmp_path)
    return ModelRegistration("ner-model", str(folder), tags)


def test_registration_refuses_non_final_lineage_and_foreign_names(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "ws", announce=lambda _m: None)
    with pytest.raises(LaunchError, match="is a 'sweep' run, not a final-training run"):
        backend.register_model(_registration(backend, tmp_path, "sweep"))
    with pytest.raises(LaunchError, match="is a 'dry_run' run"):
        backend.register_model(_registration(backend, tmp_path, "dry_run"))
    good = _registration(backend, tmp_path, "final_training")
    first = backend.register_model(good)
    assert (first.version, first.reused) == ("1", False)
    again = backend.register_model(good)
    assert (again.version, again.reused) == ("1", True)
    second = backend.register_model(_registration(backend, tmp_path, "final_training"))
    assert second.version == "2"
    with pytest.raises(LaunchError, match="already exists with another lineage"):
        backend.register_model(_registration(backend, tmp_path, "final_training", pipeline="other"))
    (tmp_path / "model" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(LaunchError, match="checkpoints are never registered"):
        backend.register_model(_registration(backend, tmp_path, "final_training"))
    versions = MlflowClient(backend.workspace.tracking_uri).search_model_versions("name='ner-model'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]


# --- notebook ------------------------------------------------------------------------------
TRAINING_IMPORTS = re.compile(
    r"^\s*(import|from)\s+(torch|lightning|pytorch_lightning|transformers|ner_lightning\.(model|data|cli|callbacks|metrics|onnx))\b",
    re.M,
)


def test_notebook_has_no_outputs_and_no_training_code() -> None:
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)
    for cell in code:
        source = "".join(cell["source"])
        assert not TRAINING_IMPORTS.search(source), source
        assert "subprocess" not in source and ".fit(" not in source


# --- end to end (needs the training and conversion jobs) -----------------------------------
#: Pin the commit: other commits landing between two runs would (rightly) change every job spec.
PINNED_COMMIT = "0" * 40
PINNED_ENV = {**os.environ, "NER_GIT_COMMIT": PINNED_COMMIT}
#: ONNX ops that only an int8 (dynamically quantized) graph holds.
QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}


def _cli_command(workspace: Path, *extra: str, config: Path = SMOKE) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launch.cli",
        "run",
        "--config",
        str(config),
        "--workspace",
        str(workspace),
        *extra,
    ]


def _run_cli(
    workspace: Path, *extra: str, config: Path = SMOKE, check: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        _cli_command(workspace, *extra, config=config),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=PINNED_ENV,
    )
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def _config_hashes(*configs: Path) -> dict[str, str]:
    return {
        f"{TAG_CONFIG_SHA256_PREFIX}{c.name}": hashlib.sha256(c.read_bytes()).hexdigest() for c in configs
    }


def _of_stage(runs: list[Run], stage: str) -> list[Run]:
    return [run for run in runs if run.data.tags.get(TAG_STAGE) == stage]


def _assert_job_tags(run: Run, stage: str, hashes: Mapping[str, str]) -> None:
    """A job's run names its stage, config hashes, dataset (name, version, fingerprint) and commit."""
    tags = run.data.tags
    assert tags[TAG_STAGE] == stage and hashes.items() <= tags.items(), tags
    assert (tags[TAG_DATASET_NAME], tags[TAG_DATASET_VERSION]) == ("toy-ner", "1")
    assert tags[TAG_DATASET_FINGERPRINT] == dataset_fingerprint(TOY_DATASET)
    assert tags[TAG_GIT_COMMIT] == PINNED_COMMIT


def _assert_int8_model_folder(folder: Path) -> None:
    """The registered folder: a quantized ONNX graph, every smoke check passed, no checkpoint."""
    graph = onnx.load(str(folder / ONNX_MODEL_FILE)).graph
    assert QUANTIZED_OPS & {node.op_type for node in graph.node}
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    assert any(tensor.data_type in int8 for tensor in graph.initializer)
    assert json.loads((folder / MODEL_METADATA_FILE).read_text())["precision"] == "int8"
    report = json.loads((folder / SMOKE_REPORT_FILE).read_text())
    assert report["passed"] is True and report["checks"]
    assert all(check["passed"] for check in report["checks"]), report["checks"]
    assert not list(folder.rglob("*.ckpt"))


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_then_reuse(tmp_path: Path) -> None:
    config = load_pipeline_config(SMOKE)
    workspace = tmp_path / "ws"
    first = _run_cli(workspace)
    assert "registration: done" in first.stdout
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name(config.experiment).experiment_id], max_results=100
    )
    (dry,), (final,), (conversion,) = (
        _of_stage(runs, s) for s in (STAGE_DRY_RUN, STAGE_FINAL, STAGE_CONVERSION)
    )
    (sweep,) = [r for r in _of_stage(runs, STAGE_SWEEP) if PARENT_RUN_TAG not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get(PARENT_RUN_TAG) == sweep.info.run_id]
    hashes = _config_hashes(*config.train_configs, SMOKE)
    sweep_hashes = {**hashes, **_config_hashes(config.sweep_config)}
    # (a) one run per job: dry run, sweep parent + one child per trial, final, conversion.
    assert len(trials) == load_sweep_config(config.sweep_config).limits.max_total_trials == 2
    assert len(runs) == 4 + len(trials)
    for run, stage in ((dry, STAGE_DRY_RUN), (final, STAGE_FINAL), (conversion, STAGE_CONVERSION)):
        _assert_job_tags(run, stage, hashes)
    for run in (sweep, *trials):
        _assert_job_tags(run, STAGE_SWEEP, sweep_hashes)
    assert all(PRIMARY_METRIC in trial.data.metrics for trial in trials)
    assert dry.data.tags[TAG_PRODUCTION_ELIGIBLE] == "false" and PRIMARY_METRIC in dry.data.metrics
    assert {r.data.tags[TAG_PRODUCTION_ELIGIBLE] for r in (sweep, *trials)} == {"false"}
    assert final.data.tags[TAG_PRODUCTION_ELIGIBLE] == "true"
    # (b) the ranked selection: files in the workspace and artifacts of the sweep run.
    summary = json.loads((workspace / "pipelines" / f"{config.name}_summary.json").read_text())
    selection_folder = Path(summary["selection_folder"])
    selection = json.loads((selection_folder / SELECTION_FILE).read_text())
    assert sorted(row["run_id"] for row in selection["ranked"]) == sorted(t.info.run_id for t in trials)
    assert len((selection_folder / RANKED_FILE).read_text().splitlines()) == 1 + len(trials)
    artifacts = {a.path for a in client.list_artifacts(sweep.info.run_id, "selection")}
    assert {f"selection/{RANKED_FILE}", f"selection/{SELECTION_FILE}"} <= artifacts
    # (c) the registered int8 model version: prod stage, metric, lineage back to the final run.
    (version,) = client.search_model_versions(f"name='{config.model_name}'")
    assert version.run_id == conversion.info.run_id
    expected = {
        **hashes,
        TAG_STAGE: STAGE_PROD,
        TAG_DATASET_NAME: "toy-ner",
        TAG_DATASET_VERSION: "1",
        TAG_BACKBONE: selection["backbone"],
        TAG_METRIC: PRIMARY_METRIC,
        TAG_METRIC_VALUE: f"{final.data.metrics[PRIMARY_METRIC]:.6f}",
        TAG_FINAL_RUN_ID: final.info.run_id,
        TAG_CONVERSION_RUN_ID: conversion.info.run_id,
        TAG_SWEEP_ID: sweep.info.run_id,
        TAG_PIPELINE: config.name,
        TAG_GIT_COMMIT: PINNED_COMMIT,
        # The conversion job's held-out scores of the registered int8 model, also in the summary.
        HELDOUT_F1_INT8: f"{conversion.data.metrics[HELDOUT_F1_INT8]:.6f}",
    }
    assert expected.items() <= version.tags.items(), version.tags
    assert summary["heldout_f1_int8"] == pytest.approx(conversion.data.metrics[HELDOUT_F1_INT8])
    # The int8 gate's figures and the chosen recipe: conversion run -> model tags and summary.
    for name in CONVERSION_GATE_METRICS:
        assert version.tags[name] == f"{conversion.data.metrics[name]:.6f}", name
    for name in CONVERSION_RECIPE_PARAMS:
        assert version.tags[name] == conversion.data.params[name] == summary["int8_recipe"][name], name
    assert summary["int8_gate"][HELDOUT_GOLD_ENTITIES] == conversion.data.metrics[HELDOUT_GOLD_ENTITIES] > 0
    assert final.data.tags[TAG_SWEEP_ID] == selection["sweep_id"] == sweep.info.run_id
    assert conversion.data.tags[TAG_FINAL_RUN_ID] == final.info.run_id
    registered = mlflow.artifacts.download_artifacts(
        artifact_uri=version.source, dst_path=str(tmp_path / "reg")
    )
    _assert_int8_model_folder(Path(registered))
    assets_before = sorted(p.relative_to(workspace) for p in (workspace / "assets").rglob("*"))

    second = _run_cli(workspace)
    assert (
        "reused: data_asset, environment, dry_run, sweep, selection, final_training, conversion, registration"
        in second.stdout
    )
    assert len(client.search_model_versions("name='ner-smoke'")) == 1
    assert sorted(p.relative_to(workspace) for p in (workspace / "assets").rglob("*")) == assets_before
    runs_after = client.search_runs(
        [client.get_experiment_by_name(config.experiment).experiment_id], max_results=100
    )
    assert len(runs_after) == len(runs)


@pytest.mark.slow
def test_sigterm_final_training_then_resume_to_registered_model(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    _run_cli(workspace, "--until", "selection")
    process = subprocess.Popen(
        _cli_command(workspace),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=PINNED_ENV,
    )
    record = None
    for _ in range(600):  # wait for the final job's last.ckpt (end of epoch 1), then stop it mid-epoch 2
        records = [json.loads(p.read_text()) for p in (workspace / "jobs").glob("final_training-*/job.json")]
        if records and Path(records[0]["outputs"]["model"], "checkpoints", "last.ckpt").is_file():
            record = records[0]
            break
        time.sleep(0.5)
    assert record is not None, "the final training never wrote last.ckpt"
    os.kill(record["pid"], signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output
    resumed = _run_cli(workspace)
    assert "resuming the interrupted final training from" in resumed.stdout
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    assert len(client.search_model_versions("name='ner-smoke'")) == 1


@pytest.mark.slow
def test_failing_dry_run_stops_before_the_sweep(tmp_path: Path) -> None:
    data = tmp_path / "bad_data"
    data.mkdir()
    for name in ("train.jsonl", "validation.jsonl", "labels.json"):
        (data / name).write_bytes((TOY_DATASET / name).read_bytes())
    lines = (data / "train.jsonl").read_text().splitlines()
    broken = json.loads(lines[2])
    broken["ner_tags"] = broken["ner_tags"][:-1]  # one tag fewer than words
    lines[2] = json.dumps(broken)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "pipeline.yaml"
    text = SMOKE.read_text().replace("../../tests/fixtures/toy_dataset", str(data))
    for relative in (
        "../train/base.yaml",
        "../train/tiny.yaml",
        "smoke_train.yaml",
        "smoke_sweep.yaml",
        "../final_training.yaml",
        "../azure/environment",
        "../azure",
    ):
        text = text.replace(f" {relative}\n", f" {(SMOKE.parent / relative).resolve()}\n")
    config.write_text(text)
    result = _run_cli(tmp_path / "ws", config=config, check=False)
    assert result.returncode == 2
    assert "dry_run job" in result.stderr and "train.jsonl" in result.stderr
    assert "sweep: running" not in result.stdout


@pytest.mark.slow
def test_notebook_runs_headless_against_the_local_backend(tmp_path: Path) -> None:
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["NER_PIPELINE_WORKSPACE"] = str(tmp_path / "ws")
    try:
        nbclient.NotebookClient(
            notebook, timeout=900, resources={"metadata": {"path": str(REPO_ROOT)}}
        ).execute()
    finally:
        os.environ.pop("NER_PIPELINE_WORKSPACE")
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "ner-smoke version 1" in text
