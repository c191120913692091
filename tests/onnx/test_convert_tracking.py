"""Inside a job (MLFLOW_RUN_ID set), the conversion logs its smoke numbers and report to that run."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from ner_lightning.contract import (
    CONVERSION_GATE_METRICS,
    ENV_MLFLOW_RUN_ID,
    ENV_MLFLOW_TRACKING_URI,
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    HELDOUT_GOLD_ENTITIES,
    INT8_F1_DROP_CI_LOW,
    INT8_FIRST_TOKEN,
    INT8_FP32_NODES,
    INT8_RECIPE,
    INT8_SIZE_MB,
    INT8_VALIDATED_ON,
    SMOKE_REPORT_FILE,
)
from ner_lightning.onnx.convert import main as convert_main
from tests.onnx.conftest import TOY_DATASET


def _job_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[mlflow.MlflowClient, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("conversion", artifact_location=str(tmp_path / "art")))
    monkeypatch.setenv(ENV_MLFLOW_TRACKING_URI, uri)
    monkeypatch.setenv(ENV_MLFLOW_RUN_ID, run.info.run_id)
    return client, run.info.run_id


def test_conversion_logs_heldout_f1_and_report_to_the_job_run(
    bert_crf_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, run_id = _job_run(tmp_path, monkeypatch)
    target = tmp_path / "model"
    assert (
        convert_main(["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)])
        == 0
    )

    report = json.loads((target / SMOKE_REPORT_FILE).read_text())
    numbers = next(c["numbers"] for c in report["checks"] if c["name"] == "int8_f1")
    metrics = client.get_run(run_id).data.metrics
    assert metrics[HELDOUT_F1_FP32] == pytest.approx(numbers["fp32_f1"])
    assert metrics[HELDOUT_F1_INT8] == pytest.approx(numbers["int8_f1"])
    assert metrics[INT8_SIZE_MB] == pytest.approx(report["int8_size_mb"])
    # The gate's figures (metrics) and the chosen recipe (params) travel to the launcher through the run.
    assert set(CONVERSION_GATE_METRICS) <= set(metrics)
    assert metrics[INT8_F1_DROP_CI_LOW] == pytest.approx(numbers["ci_low"])
    assert metrics[HELDOUT_GOLD_ENTITIES] == numbers["gold_entities"] > 0
    params = client.get_run(run_id).data.params
    assert params[INT8_RECIPE] == report["quantization"]["recipe"]
    assert params[INT8_FP32_NODES] == (",".join(report["quantization"]["fp32_nodes"]) or "none")
    assert params[INT8_VALIDATED_ON] == report["cpu"]["level"]
    assert params[INT8_FIRST_TOKEN] == report["quantization"]["first_token"] == "scaled"
    assert [a.path for a in client.list_artifacts(run_id)] == [SMOKE_REPORT_FILE]


def test_failed_smoke_test_is_still_logged_to_the_job_run(
    bert_crf_output: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, run_id = _job_run(tmp_path, monkeypatch)
    target = tmp_path / "model"
    # A negative tolerance cannot be met: the int8_f1 check fails and no folder is written.
    code = convert_main(
        [
            "--input",
            str(bert_crf_output),
            "--output",
            str(target),
            "--data",
            str(TOY_DATASET),
            "--f1-tolerance",
            "-1",
        ]
    )
    assert code == 1 and not target.exists()
    assert HELDOUT_F1_INT8 in client.get_run(run_id).data.metrics
    logged = client.download_artifacts(run_id, SMOKE_REPORT_FILE, str(tmp_path))
    assert json.loads(Path(logged).read_text())["failed_checks"] == ["int8_f1"]
