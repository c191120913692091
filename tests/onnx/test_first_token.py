"""The first token's outlier row (`ner_lightning.onnx.first_token`): found on calibration windows,
rewritten exactly in fp32, and quantized so that it no longer coarsens every other token's int8 step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from ner_lightning.contract import MODEL_METADATA_FILE
from ner_lightning.errors import ExportError
from ner_lightning.onnx import first_token
from ner_lightning.onnx.convert import main as convert_main
from ner_lightning.onnx.quantize import QuantizeOptions, quantize_model
from tests.onnx.conftest import TOY_DATASET

HIDDEN, OUT, OUTLIER = 64, 48, 12.0


def _graph(path: Path) -> Path:
    """emissions = relu(x @ w1) @ w2, with x [window, position, HIDDEN] and a mask input."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, HIDDEN)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (HIDDEN, OUT)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "w2"], ["emissions"], name="second"),
        ],
        "toy",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, HIDDEN]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [None, None]),
        ],
        [helper.make_tensor_value_info("emissions", TensorProto.FLOAT, [None, None, OUT])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _windows(seed: int, count: int = 8, length: int = 20, padded: int = 0) -> dict[str, np.ndarray]:
    """Windows whose first row is OUTLIER times larger than the rest; `padded` trailing pad rows of 50."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (count, length + padded, HIDDEN)).astype(np.float32)
    x[:, 0] *= OUTLIER
    x[:, length:] = 50.0
    mask = np.zeros((count, length + padded), np.int64)
    mask[:, :length] = 1
    return {"x": x, "attention_mask": mask}


def _run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def test_ratios_ignore_padding_and_modes_pick_their_inputs(tmp_path: Path) -> None:
    model = onnx.load(str(_graph(tmp_path / "toy.onnx")))
    # Padding rows of 50 would hide the outlier if they counted.
    ratios = first_token.first_row_ratios(model, [_windows(1, padded=5), _windows(2)])
    assert set(ratios) == {"x", "r"}
    assert ratios["x"] > 6.0
    scaled = first_token.treated_inputs(ratios, "scaled")
    assert scaled["x"] == 2.0 ** np.floor(np.log2(ratios["x"])) and scaled["x"] >= 4.0
    assert set(first_token.treated_inputs({"a": 1.9, "b": 1.2, "c": 0.5}, "scaled")) == set()
    assert set(first_token.treated_inputs({"a": 1.9, "b": 1.2, "c": 0.5}, "split")) == {"a", "b"}
    assert first_token.treated_inputs(ratios, "shared") == {}
    # A node kept in fp32 is neither measured nor rewritten.
    assert "x" not in first_token.first_row_ratios(model, [_windows(1)], exclude=["first"])


@pytest.mark.parametrize("mode", ["scaled", "split"])
def test_the_rewrite_computes_the_same_emissions_in_fp32(tmp_path: Path, mode: str) -> None:
    source = _graph(tmp_path / "toy.onnx")
    model = onnx.load(str(source))
    treated = first_token.treated_inputs(first_token.first_row_ratios(model, [_windows(1)]), mode)
    rewritten = tmp_path / f"{mode}.onnx"
    onnx.save(first_token.rewrite(model, treated, mode), str(rewritten))
    onnx.checker.check_model(str(rewritten))
    feeds = _windows(7, count=3, length=11)
    # Powers of two scale exactly: bit for bit. The split only reorders the same sums.
    if mode == "scaled":
        assert np.array_equal(_run(rewritten, feeds), _run(source, feeds))
    else:
        np.testing.assert_allclose(_run(rewritten, feeds), _run(source, feeds), rtol=1e-6, atol=1e-6)
    assert {n.name for n in onnx.load(str(rewritten)).graph.node} >= (
        {"first", "second"} if mode == "scaled" else {"first_first", "first_rest"}
    )


def test_int8_error_of_the_other_tokens_drops_and_the_first_row_loses_nothing(tmp_path: Path) -> None:
    source = _graph(tmp_path / "toy.onnx")
    calibration = [_windows(1), _windows(2)]
    feeds = _windows(9, count=16, length=24)
    reference = _run(source, feeds)
    errors = {}
    for mode in first_token.FIRST_TOKEN_MODES:
        target = tmp_path / f"int8-{mode}.onnx"
        quantize_model(source, target, QuantizeOptions(optimize=False, first_token=mode), calibration)
        assert not list(tmp_path.glob("*.first-token.onnx")), "the scratch graph is removed"
        got = _run(target, feeds)
        errors[mode] = (
            float(np.abs(got[:, 1:] - reference[:, 1:]).mean() / np.abs(reference[:, 1:]).mean()),
            float(np.abs(got[:, 0] - reference[:, 0]).mean() / np.abs(reference[:, 0]).mean()),
        )
    shared_rest, shared_first = errors["shared"]
    for mode in ("scaled", "split"):
        rest, first = errors[mode]
        assert rest < shared_rest / 3, errors
        assert first <= shared_first * 1.25, errors


def test_a_mode_that_needs_calibration_says_so(tmp_path: Path) -> None:
    source = _graph(tmp_path / "toy.onnx")
    with pytest.raises(ExportError) as caught:
        quantize_model(source, tmp_path / "int8.onnx", QuantizeOptions(optimize=False, first_token="scaled"))
    assert caught.value.field == "first_token" and "calibration" in str(caught.value)
    with pytest.raises(ExportError) as caught:
        quantize_model(source, tmp_path / "int8.onnx", QuantizeOptions(optimize=False, first_token="half"))  # type: ignore[arg-type]
    assert caught.value.field == "first_token" and "scaled" in caught.value.fix
    # `shared` needs none: onnxruntime's plain dynamic quantization.
    quantize_model(source, tmp_path / "int8.onnx", QuantizeOptions(optimize=False, first_token="shared"))
    assert (tmp_path / "int8.onnx").is_file()


def test_ner_convert_records_the_first_token_mode(bert_crf_output: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    argv = ["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)]
    assert convert_main([*argv, "--no-optimize", "--first-token", "split"]) == 0
    quantization = json.loads((target / MODEL_METADATA_FILE).read_text())["quantization"]
    assert quantization["recipe"] == "custom" and quantization["first_token"] == "split"
    assert quantization["candidates"][0]["first_token"] == "split"
