"""Accuracy-aware quantization through `ner-convert`: fallbacks, the failure table, ISA, tamper evidence."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ner_lightning.contract import MODEL_METADATA_FILE, ONNX_DIR, ONNX_MODEL_FILE, SMOKE_REPORT_FILE
from ner_lightning.errors import ModelError
from ner_lightning.onnx.convert import convert
from ner_lightning.onnx.convert import main as convert_main
from ner_lightning.onnx.cpu_isa import VNNI_TARGETS, detect_cpu
from ner_lightning.onnx.predict_cli import main as predict_main
from ner_lightning.onnx.predictor import OnnxTagger
from ner_lightning.onnx.quantize import QuantizeOptions, head_node_names
from ner_lightning.onnx.recipes import Recipe, named_recipes
from tests.onnx.conftest import TOY_DATASET


@dataclass(frozen=True)
class HeadScaleCorrupted(Recipe):
    """A test-only recipe that loses accuracy: the real quantization, then the head's weight scales negated x5.

    Whenever the graph it quantizes holds the emission head (`head` is its node name) and the
    recipe does not keep it in fp32, the head's int8 weights are read back with a wrong scale.
    """

    head: str = ""

    def build(self, source: Path, target: Path, calibration: Sequence[Mapping[str, np.ndarray]] = ()) -> None:
        super().build(source, target, calibration)
        nodes = [n for n in onnx.load(str(source)).graph.node if n.name == self.head]
        if not nodes or self.head in self.options.exclude_nodes:
            return
        scale = f"{nodes[0].input[1]}_scale"
        graph = onnx.load(str(target))
        for initializer in graph.graph.initializer:
            if initializer.name == scale:
                values = numpy_helper.to_array(initializer)
                initializer.CopyFrom(numpy_helper.from_array((values * -5).astype(values.dtype), scale))
        onnx.save(graph, str(target))


def _corrupted(output: Path) -> HeadScaleCorrupted:
    (head,) = head_node_names(output / ONNX_DIR / ONNX_MODEL_FILE)
    return HeadScaleCorrupted("corrupt-head-scale", QuantizeOptions(optimize=False), head=head)


def _rows(target: Path) -> list[dict]:
    return json.loads((target / MODEL_METADATA_FILE).read_text())["quantization"]["candidates"]


def test_a_recipe_that_loses_accuracy_falls_back_to_the_next(bert_crf_output: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    plain = named_recipes()["dynamic-pc-rr-unfused"]
    report = convert(
        bert_crf_output, target, data_dir=str(TOY_DATASET), recipes=[_corrupted(bert_crf_output), plain]
    )
    rows = _rows(target)
    assert [(r["recipe"], r["chosen"]) for r in rows] == [
        ("corrupt-head-scale", False),
        ("dynamic-pc-rr-unfused", True),
    ]
    assert rows[0]["verdict"] == "too_small:fail" and rows[0]["drop"] > 0.01
    assert report["passed"] and report["quantization"]["recipe"] == "dynamic-pc-rr-unfused"
    # The folder serves the chosen graph, which answers like the gate measured.
    assert OnnxTagger(target).tag_words([["Angela", "Merkel", "visited", "Paris"]])


def test_mixed_precision_keeps_the_damaged_node_in_fp32(bert_crf_output: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    corrupted = _corrupted(bert_crf_output)
    convert(bert_crf_output, target, data_dir=str(TOY_DATASET), recipes=[corrupted])
    metadata = json.loads((target / MODEL_METADATA_FILE).read_text())
    quantization = metadata["quantization"]
    # Ranked on training sentences, the corrupted head is the most sensitive node by far.
    assert quantization["sensitivity"][0]["name"] == corrupted.head
    assert (
        quantization["sensitivity"][0]["relative_error"]
        > 10 * quantization["sensitivity"][1]["relative_error"]
    )
    # Isolating the first token's row cannot repair a wrong weight scale; keeping the node in fp32 can.
    assert [r["tier"] for r in quantization["candidates"]] == ["whole-graph", "first-token", "mixed"]
    assert quantization["candidates"][1]["first_token"] == "split"
    recipe = quantization["recipe"]
    assert recipe.startswith("corrupt-head-scale") and recipe.endswith("+fp32x1")
    assert quantization["fp32_nodes"] == [corrupted.head]
    graph = onnx.load(str(target / ONNX_MODEL_FILE)).graph
    assert [n.op_type for n in graph.node if n.name == corrupted.head] == ["MatMul"], "the head stays fp32"
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)


def test_nothing_passes_exits_1_with_the_table(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, report_path = tmp_path / "model", tmp_path / "report.json"
    argv = ["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)]
    # A drop of -1 (int8 a hundred points better than fp32) is out of reach for every recipe.
    assert convert_main([*argv, "--f1-tolerance", "-1", "--report", str(report_path)]) == 1
    err = capsys.readouterr().err
    report = json.loads(report_path.read_text())
    rows = report["quantization"]["candidates"]
    assert "no int8 recipe passed the gate" in err and f"({len(rows)} tried)" in err
    assert "recipe" in err and "verdict" in err and "ms/batch" in err
    tiers = {row["tier"] for row in rows}
    assert tiers == {"whole-graph", "first-token", "mixed", "static"}, rows
    assert all(row["recipe"] in err for row in rows) and not any(row["chosen"] for row in rows)
    assert report["failed_checks"] == ["int8_f1"] and not target.exists()


def test_missing_the_target_tries_every_fallback_then_keeps_the_most_accurate_that_passed(
    bert_crf_output: Path, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    argv = ["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)]
    # Every candidate passes the gate, none reaches a drop of -1: the search goes through every tier.
    assert convert_main([*argv, "--target-drop", "-1"]) == 0
    quantization = json.loads((target / MODEL_METADATA_FILE).read_text())["quantization"]
    rows = quantization["candidates"]
    assert {row["tier"] for row in rows} == {"whole-graph", "first-token", "mixed", "static"}
    assert quantization["target_met"] is False and not any(row["target_met"] for row in rows)
    (chosen,) = [row for row in rows if row["chosen"]]
    passed = [row for row in rows if row["verdict"].endswith("pass")]
    assert chosen["drop"] == min(row["drop"] for row in passed)
    # Timings are the run's record: every candidate's in the smoke report, none in ner_model.json.
    assert not any("ms_per_batch" in row or "speedup_vs_fp32" in row for row in rows)
    speed = json.loads((target / SMOKE_REPORT_FILE).read_text())["speed"]
    assert [t["recipe"] for t in speed["candidates"]] == [row["recipe"] for row in rows]
    assert speed["fp32_ms_per_batch"] > 0 and all(t["ms_per_batch"] > 0 for t in speed["candidates"])


def test_converting_the_same_weights_again_writes_the_same_model_record(
    bert_crf_output: Path, tmp_path: Path
) -> None:
    """`ner_model.json` and the graph repeat byte for byte: the choice and the record hold no timing."""
    argv = ["--input", str(bert_crf_output), "--data", str(TOY_DATASET), "--target-drop", "-1"]
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder in folders:
        assert convert_main([*argv, "--output", str(folder)]) == 0
    for name in (MODEL_METADATA_FILE, ONNX_MODEL_FILE):
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    reports = [json.loads((folder / SMOKE_REPORT_FILE).read_text()) for folder in folders]
    assert reports[0]["speed"]["candidates"] != [] and "source_weights_sha256" in json.loads(
        (folders[0] / MODEL_METADATA_FILE).read_text()
    )


def test_target_isa_is_recorded_and_a_kernel_mismatch_warns(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpu = detect_cpu()
    other = "avx2" if cpu.level in VNNI_TARGETS else "avx512_vnni"
    target = tmp_path / "model"
    argv = ["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)]
    assert convert_main([*argv, "--target-isa", other]) == 0
    err = capsys.readouterr().err
    assert f"converting for {other} on a {cpu.level} CPU" in err and "may differ" in err
    quantization = json.loads((target / MODEL_METADATA_FILE).read_text())["quantization"]
    assert quantization["target_isa"] == other
    assert quantization["validated_on"]["level"] == cpu.level
    # Without VNNI, full-range weights saturate: an avx2 target only gets 7-bit (reduce_range) recipes.
    assert all(r["reduce_range"] for r in quantization["candidates"]) is (other == "avx2")
    report = json.loads((target / SMOKE_REPORT_FILE).read_text())
    assert report["cpu_warning"] and report["cpu"]["level"] == cpu.level


def test_a_tampered_recipe_record_is_refused(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model"
    assert (
        convert_main(["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)])
        == 0
    )
    OnnxTagger(target)  # the sealed folder loads
    metadata_path = target / MODEL_METADATA_FILE
    sealed = metadata_path.read_text()

    edited = json.loads(sealed)
    edited["quantization"]["recipe"] = "dynamic-pt"
    metadata_path.write_text(json.dumps(edited))
    with pytest.raises(ModelError, match=r"recipe .dynamic-pt.\) was edited after conversion"):
        OnnxTagger(target)
    capsys.readouterr()
    assert predict_main(["--model", str(target), "--text", "Paris"]) == 2
    assert "was edited after conversion" in capsys.readouterr().err

    edited = json.loads(sealed)
    edited["quantization"]["fp32_nodes"] = []
    edited["quantization"]["gate"]["drop"] = 0.0
    del edited["integrity"]
    metadata_path.write_text(json.dumps(edited))
    with pytest.raises(ModelError, match="no integrity seal"):
        OnnxTagger(target)

    metadata_path.write_text(sealed)
    shutil.copy2(bert_crf_output / ONNX_DIR / ONNX_MODEL_FILE, target / ONNX_MODEL_FILE)
    with pytest.raises(ModelError, match=r"model\.onnx is not the graph this folder was converted"):
        OnnxTagger(target)
