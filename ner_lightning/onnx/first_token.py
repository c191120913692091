"""The first token's outlier row: keep it from setting every other token's int8 step.

Dynamic int8 quantizes each matrix product's input with one scale per call, set by the input's
largest absolute value. In BERT-like encoders that value sits, at most layers, in the row of the
window's first token ([CLS], an attention sink): on MiniLM-L6 fine-tuned on WNUT16 it is 2-8 times
the largest value of any other token at 13 of the 25 inputs of the matrix products. Every other
token then gets a 2-8 times coarser step than its own values need (docs/quantization.md, "The first
token").

Calibration (training-split windows) measures, per input, the ratio of the first row's largest
absolute value to the other rows' in every window; an input is *dominated* when the largest power of
two not above the smallest ratio seen, its factor, is at least 2. Only dominated inputs are changed,
before quantization, in one of two ways:
- `scaled`: the first row is multiplied by 1/factor before the product and its output row by factor
  after it. Powers of two make this exact in fp32 (the rewritten graph's emissions equal the
  original's bit for bit), and since the first row stays at least as large as any other row, no
  row's int8 step grows: the first row's stays as it was, every other row's shrinks by the factor.
  Two elementwise products per input, about free.
- `split`: the first row and the others go through the product separately (two quantized products
  sharing the int8 weights, then a concat), so each gets its own scale. The most accurate; an
  extra small product per matrix product (about 5 % slower on one window).
`shared` leaves the graph as onnxruntime quantizes it. Nodes kept in fp32 are never rewritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ner_lightning.errors import ExportError

FirstToken = Literal["shared", "scaled", "split"]
#: How a recipe treats the first token's row (see the module docstring).
FIRST_TOKEN_MODES: tuple[str, ...] = ("shared", "scaled", "split")
#: Smallest factor of an input the `scaled` mode rewrites.
MIN_FACTOR = 2.0
#: Smallest first-row ratio of an input the `split` mode rewrites (its first row is the largest).
MIN_SPLIT_RATIO = 1.0
#: Name prefix of every node and initializer the rewrite adds.
PREFIX = "first_token"
_MASK_INPUT = "attention_mask"


def _products(model: onnx.ModelProto, exclude: Sequence[str]) -> list[onnx.NodeProto]:
    """MatMul nodes with a constant 2-D weight and a computed input, not kept in fp32."""
    weights = {init.name: init for init in model.graph.initializer}
    skipped = set(exclude)
    return [
        node
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.name not in skipped
        and node.input[1] in weights
        and len(weights[node.input[1]].dims) == 2
        and node.input[0] not in weights
    ]


def first_row_ratios(
    model: onnx.ModelProto,
    calibration: Sequence[Mapping[str, np.ndarray]],
    exclude: Sequence[str] = (),
) -> dict[str, float]:
    """Per input of the graph's matrix products, how much larger its first row is than the others.

    Args:
        model: The fp32 graph (fused or not).
        calibration: onnxruntime inputs of training-split windows (`attention_mask` marks the
            padding; without it every position counts).
        exclude: Names of nodes kept in fp32.

    Returns:
        `{input tensor name: smallest ratio over the calibration windows}` of the first row's largest
        absolute value to the other rows'; inputs that are not 3-D are left out.
    """
    from ner_lightning.onnx.sensitivity import capture_inputs

    products = _products(model, exclude)
    if not products or not calibration:
        return {}
    captured = capture_inputs(model, products, calibration)
    smallest: dict[str, float] = {}
    for name in dict.fromkeys(node.input[0] for node in products):
        ratios = []
        for values, batch in zip(captured, calibration, strict=True):
            x = np.abs(np.asarray(values[name], dtype=np.float64))
            mask = batch.get(_MASK_INPUT)
            # Only [window, position, feature] tensors: not e.g. DeBERTa's shared position embeddings.
            if x.ndim != 3 or (mask is not None and x.shape[:2] != np.shape(mask)):
                ratios = []
                break
            lengths = (
                np.asarray(mask).sum(axis=1).astype(int)
                if mask is not None
                else np.full(x.shape[0], x.shape[1])
            )
            for row, length in zip(x, lengths, strict=True):
                if length > 1:
                    ratios.append(row[0].max() / max(float(row[1:length].max()), 1e-30))
        if ratios:
            smallest[name] = float(min(ratios))
    return smallest


def treated_inputs(ratios: Mapping[str, float], mode: str) -> dict[str, float]:
    """The inputs a mode rewrites, with their factors (see the module docstring).

    `scaled` takes the inputs whose factor, the largest power of two not above the ratio, is at least
    `MIN_FACTOR`; `split` every input whose first row is the largest in every calibration window.
    """
    if mode == "scaled":
        factors = {name: float(2.0 ** np.floor(np.log2(r))) for name, r in ratios.items() if r >= MIN_FACTOR}
        return {name: f for name, f in factors.items() if f >= MIN_FACTOR}
    if mode == "split":
        return {name: r for name, r in ratios.items() if r >= MIN_SPLIT_RATIO}
    return {}


def rewrite(model: onnx.ModelProto, factors: Mapping[str, float], mode: str) -> onnx.ModelProto:
    """A copy of `model` whose products of the `factors` inputs (`treated_inputs`) treat the first row per `mode`.

    Raises:
        ExportError: `mode` is unknown.
    """
    if mode not in FIRST_TOKEN_MODES:
        raise ExportError(
            f"unknown first-token mode {mode!r}",
            field="first_token",
            fix=f"use one of: {', '.join(FIRST_TOKEN_MODES)}",
        )
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    if mode == "shared" or not factors:
        return rewritten
    graph = rewritten.graph
    weights = {init.name: init for init in graph.initializer}
    targets = {
        position
        for position, node in enumerate(graph.node)
        if node.op_type == "MatMul"
        and node.input[0] in factors
        and node.input[1] in weights
        and len(weights[node.input[1]].dims) == 2
    }
    if mode == "split":
        for name, value in (("axis1", 1), ("start0", 0), ("start1", 1), ("end", np.iinfo(np.int64).max)):
            graph.initializer.append(
                numpy_helper.from_array(np.asarray([value], np.int64), f"{PREFIX}_{name}")
            )
    nodes: list[onnx.NodeProto] = []
    prepared: dict[str, tuple[str, str]] = {}
    for position, node in enumerate(graph.node):
        if position not in targets:
            nodes.append(node)
            continue
        source, output = node.input[0], node.output[0]
        index = len(prepared)
        if source not in prepared:
            if mode == "scaled":
                if not prepared:
                    nodes.extend(_first_position_indicator(source))
                nodes.extend(_scaled_input(graph, source, factors[source], index))
                prepared[source] = (f"{PREFIX}_{index}_input", f"{PREFIX}_{index}_up")
            else:
                first, rest = f"{PREFIX}_{index}_first", f"{PREFIX}_{index}_rest"
                nodes.append(
                    helper.make_node(
                        "Slice",
                        [source, f"{PREFIX}_start0", f"{PREFIX}_start1", f"{PREFIX}_axis1"],
                        [first],
                        name=f"{PREFIX}_{index}_slice_first",
                    )
                )
                nodes.append(
                    helper.make_node(
                        "Slice",
                        [source, f"{PREFIX}_start1", f"{PREFIX}_end", f"{PREFIX}_axis1"],
                        [rest],
                        name=f"{PREFIX}_{index}_slice_rest",
                    )
                )
                prepared[source] = (first, rest)
        if mode == "scaled":
            scaled_input, up = prepared[source]
            product = helper.make_node(
                "MatMul", [scaled_input, node.input[1]], [f"{output}_{PREFIX}"], name=node.name
            )
            nodes.append(product)
            nodes.append(
                helper.make_node("Mul", [product.output[0], up], [output], name=f"{node.name}_{PREFIX}_up")
            )
        else:
            first, rest = prepared[source]
            nodes.append(
                helper.make_node(
                    "MatMul", [first, node.input[1]], [f"{output}_{PREFIX}_first"], name=f"{node.name}_first"
                )
            )
            nodes.append(
                helper.make_node(
                    "MatMul", [rest, node.input[1]], [f"{output}_{PREFIX}_rest"], name=f"{node.name}_rest"
                )
            )
            nodes.append(
                helper.make_node(
                    "Concat",
                    [f"{output}_{PREFIX}_first", f"{output}_{PREFIX}_rest"],
                    [output],
                    name=f"{node.name}_{PREFIX}_concat",
                    axis=1,
                )
            )
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _first_position_indicator(source: str) -> list[onnx.NodeProto]:
    """Nodes computing `first_token_is_first` [1, S, 1]: 1.0 at position 0, else 0.0 (S from `source`)."""
    p = PREFIX
    return [
        helper.make_node("Shape", [source], [f"{p}_shape"], name=f"{p}_shape"),
        helper.make_node(
            "Gather", [f"{p}_shape", f"{p}_start1_scalar"], [f"{p}_length"], name=f"{p}_length", axis=0
        ),
        helper.make_node(
            "Range",
            [f"{p}_zero_scalar", f"{p}_length", f"{p}_one_scalar"],
            [f"{p}_positions"],
            name=f"{p}_positions",
        ),
        helper.make_node(
            "Equal", [f"{p}_positions", f"{p}_zero_scalar"], [f"{p}_is_first_bool"], name=f"{p}_equal"
        ),
        helper.make_node(
            "Cast",
            [f"{p}_is_first_bool"],
            [f"{p}_is_first_flat"],
            name=f"{p}_cast",
            to=onnx.TensorProto.FLOAT,
        ),
        helper.make_node(
            "Unsqueeze",
            [f"{p}_is_first_flat", f"{p}_unsqueeze_axes"],
            [f"{p}_is_first"],
            name=f"{p}_unsqueeze",
        ),
    ]


def _scaled_input(graph: onnx.GraphProto, source: str, factor: float, index: int) -> list[onnx.NodeProto]:
    """Nodes scaling the first row of `source` by 1/factor, and the row vector that scales it back."""
    p = f"{PREFIX}_{index}"
    if not any(init.name == f"{PREFIX}_zero_scalar" for init in graph.initializer):
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.asarray(0, np.int64), f"{PREFIX}_zero_scalar"),
                numpy_helper.from_array(np.asarray(1, np.int64), f"{PREFIX}_one_scalar"),
                numpy_helper.from_array(np.asarray(1, np.int64), f"{PREFIX}_start1_scalar"),
                numpy_helper.from_array(np.asarray([0, 2], np.int64), f"{PREFIX}_unsqueeze_axes"),
            ]
        )
    # down = 1 + (1/f - 1) * is_first and up = 1 + (f - 1) * is_first: exact for powers of two.
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(1.0 / factor - 1.0, np.float32), f"{p}_down_step"),
            numpy_helper.from_array(np.asarray(factor - 1.0, np.float32), f"{p}_up_step"),
            numpy_helper.from_array(np.asarray(1.0, np.float32), f"{p}_unit"),
        ]
    )
    return [
        helper.make_node(
            "Mul", [f"{PREFIX}_is_first", f"{p}_down_step"], [f"{p}_down_delta"], name=f"{p}_down_delta"
        ),
        helper.make_node("Add", [f"{p}_down_delta", f"{p}_unit"], [f"{p}_down"], name=f"{p}_down"),
        helper.make_node(
            "Mul", [f"{PREFIX}_is_first", f"{p}_up_step"], [f"{p}_up_delta"], name=f"{p}_up_delta"
        ),
        helper.make_node("Add", [f"{p}_up_delta", f"{p}_unit"], [f"{p}_up"], name=f"{p}_up"),
        helper.make_node("Mul", [source, f"{p}_down"], [f"{p}_input"], name=f"{p}_scale_down"),
    ]
