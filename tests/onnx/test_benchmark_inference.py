"""`benchmarks/inference.py --quick` runs the three sides on a tiny model and writes its table."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.inference import main
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR
from tests.onnx.conftest import TOY_DATASET


def test_inference_benchmark_quick(trained_models: dict, tmp_path: Path) -> None:
    checkpoint = trained_models[("bert", True)] / CHECKPOINT_DIR / BEST_CHECKPOINT
    result = main(
        [
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(TOY_DATASET),
            "--threads",
            "1",
            "--quick",
            "--results-dir",
            str(tmp_path),
        ]
    )
    sides = [row["side"] for row in result["rows"]]
    assert sides == ["PyTorch fp32 (eager)", "ONNX fp32", "ONNX int8"]
    payload = json.loads((tmp_path / "inference_quick.json").read_text(encoding="utf-8"))
    rows = payload["tables"]["Results"]
    assert rows[0]["x_b1"] == 1.0 and all(
        row["sent_per_s_b32"] > 0 and row["p95_ms_b1"] >= row["p50_ms_b1"] for row in rows
    )
    # fp32 ONNX tags equal PyTorch's, so their F1 is identical.
    assert rows[1]["f1"] == rows[0]["f1"]
    assert "int8 vs PyTorch fp32" in (tmp_path / "inference_quick.md").read_text(encoding="utf-8")
