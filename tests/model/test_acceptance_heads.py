"""Issue 15 acceptance 1 and 3: a head from one file + an overlay goes through fit, export, int8
conversion and `ner-predict`; fit writing to a file reports progress as it goes; the logs carry no
third-party noise and no tracking store appears in the working folder."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ner_lightning.contract import MODEL_METADATA_FILE, ONNX_DIR
from tests.fixtures.tiny_runs import REPO_ROOT, TOY_DATASET, tiny_fit_args

OVERLAY = REPO_ROOT / "tests" / "model" / "heads_example" / "mlp_head.yaml"
PROGRESS = re.compile(r"^\[progress (\d\d:\d\d:\d\d)\] (.*)$")


NOISE = (
    "💡",
    "LeafSpec",
    "Creating initial MLflow database",
    "pre-processing before quantization",
    "Loading weights",
)


def _run(*args: str, cwd: Path, log: Path | None = None) -> str:
    """A console tool as jobs run it: a subprocess (one thread, no MLflow variables); its stdout,
    or with `log`, stdout and stderr written to that file as a job log is."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    environment.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    with open(log, "w", encoding="utf-8") if log else open(os.devnull, "w") as sink:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=cwd,
            env=environment,
            stdout=sink if log else subprocess.PIPE,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
            timeout=600,
            check=False,
        )
    output = log.read_text(encoding="utf-8") if log else result.stdout
    assert result.returncode == 0, (output + (result.stderr or ""))[-3000:]
    assert not [noise for noise in NOISE if noise in output + (result.stderr or "")]
    return output


@pytest.mark.slow
def test_a_head_from_one_test_file_trains_exports_converts_and_tags(tmp_path: Path) -> None:
    out, int8, work = tmp_path / "out", tmp_path / "int8", tmp_path / "work"
    work.mkdir()
    fit = tiny_fit_args(
        out,
        "--trainer.max_epochs",
        "20",
        "--onnx_export.enabled",
        "true",
        "--progress_log.interval_s",
        # Short enough that a fast machine still writes training-step lines (20 toy epochs take ~2 s).
        "0.2",
        overlays=[OVERLAY],
        logger=True,
    )
    log = _run("-m", "ner_lightning", *fit, cwd=work, log=tmp_path / "fit.log")
    # The MLflow store is in the output folder, not the working folder; fit scored the test split
    # after training and logged the per-type table.
    assert (out / "mlruns.db").is_file() and not list(work.iterdir())
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {"val_f1", "test_f1", "test_precision", "test_recall"} <= set(run.data.metrics)
    assert run.data.params["head/class_path"] == "tests.model.heads_example.mlp_head.MLPHead"
    table = json.loads(
        Path(client.download_artifacts(run.info.run_id, "test_entity_scores.json", str(tmp_path))).read_text()
    )
    assert table["columns"] == ["type", "precision", "recall", "f1", "support"]
    assert [row[0] for row in table["data"]] == ["LOC", "ORG", "PER", "micro"]
    assert "intra-op threads: 1 (cores available: 1, limited by OMP_NUM_THREADS)" in log

    # Acceptance 3: written to a file, fit reports progress at least every 30 s while it trains.
    stamps = [PROGRESS.match(line) for line in log.splitlines()]
    stamps = [m for m in stamps if m]
    assert stamps[0].group(2).startswith("training:") and stamps[-1].group(2).startswith("training done")
    steps = [m.group(2) for m in stamps if " step " in m.group(2)]
    assert steps and all(re.search(r"loss [\d.]+ tokens/s \d+ elapsed \S+ ETA \S+", s) for s in steps)
    assert any("val_f1" in s for s in steps[1:]) or "val_f1" in stamps[-1].group(2)
    times = [datetime.strptime(m.group(1), "%H:%M:%S") for m in stamps]
    gaps = [(b - a).total_seconds() % 86400 for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 30, gaps

    metadata = json.loads((out / ONNX_DIR / MODEL_METADATA_FILE).read_text(encoding="utf-8"))
    assert metadata["head"] == {
        "class_path": "tests.model.heads_example.mlp_head.MLPHead",
        "init_args": {"width": 64},
    }
    assert metadata["decoder"] == {"name": "argmax", "args": {}}

    # int8 conversion: its smoke test compares the int8 folder with this checkpoint's PyTorch model.
    _run(
        "-m", "ner_lightning.onnx.convert", "--input", str(out), "--output", str(int8),
        "--data", str(TOY_DATASET), "--f1-tolerance", "0.2", cwd=work, log=tmp_path / "convert.log",
    )  # fmt: skip
    report = json.loads((int8 / "smoke_report.json").read_text(encoding="utf-8"))
    assert report["passed"], report
    assert json.loads((int8 / MODEL_METADATA_FILE).read_text(encoding="utf-8"))["precision"] == "int8"

    text = "Anna Schmidt flew from Berlin to Paris with Lufthansa ."
    predicted = _run("-m", "ner_lightning.onnx.predict_cli", "--model", str(int8), "--text", text, cwd=work)
    tagged = json.loads(predicted.splitlines()[0])
    assert [t["text"] for t in tagged["tokens"]] == text.split()
    assert all(t["tag"] in metadata["labels"] for t in tagged["tokens"])
