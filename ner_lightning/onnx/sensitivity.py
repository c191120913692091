"""Which matrix products lose the most to int8? Per-node output error on calibration batches.

For every node the recipe would quantize (MatMul, fused Attention, Gemm with a constant weight),
the fp32 graph is run once on calibration batches (training sentences) with the node's inputs
exposed as outputs. Each node is then cut out as a one-node graph, quantized alone with the
recipe's options, and run on exactly those captured inputs next to its fp32 original. Its
sensitivity is the relative output error `||y_int8 - y_fp32|| / ||y_fp32||` over all batches: the
error the node adds itself, with this CPU's int8 kernels, free of the error upstream nodes pass on.
The recipe search keeps the most sensitive nodes in fp32, step by step.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

if TYPE_CHECKING:
    from ner_lightning.onnx.recipes import Recipe


@dataclass(frozen=True)
class NodeError:
    """The int8 output error of one node on the calibration batches."""

    name: str
    op_type: str
    relative_error: float


def quantizable_nodes(model: onnx.ModelProto, op_types: Sequence[str]) -> list[onnx.NodeProto]:
    """Nodes of `op_types` whose weight (second input) is a constant initializer, in graph order."""
    initializers = {init.name for init in model.graph.initializer}
    return [
        node
        for node in model.graph.node
        if node.op_type in op_types and len(node.input) > 1 and node.input[1] in initializers
    ]


def capture_inputs(
    model: onnx.ModelProto, nodes: Sequence[onnx.NodeProto], feeds: Sequence[Mapping[str, np.ndarray]]
) -> list[dict[str, np.ndarray]]:
    """Per batch, the values of every non-constant input of `nodes` in the fp32 graph."""
    import onnxruntime

    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    wanted = sorted({name for node in nodes for name in node.input if name and name not in initializers})
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(
        onnx.ValueInfoProto(name=name) for name in wanted if name not in present and name not in graph_inputs
    )
    session = onnxruntime.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    input_names = [i.name for i in session.get_inputs()]
    captured = []
    for batch in feeds:
        values = dict(zip(output_names, session.run(None, {k: batch[k] for k in input_names}), strict=True))
        values.update({k: np.asarray(batch[k]) for k in input_names})
        captured.append({name: values[name] for name in wanted})
    return captured


def _single_node_model(
    model: onnx.ModelProto, node: onnx.NodeProto, sample: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """A graph of `node` alone: its constant inputs as initializers, the others as graph inputs."""
    initializers = {init.name: init for init in model.graph.initializer}
    inputs = [
        helper.make_tensor_value_info(
            name, helper.np_dtype_to_tensor_dtype(sample[name].dtype), [None] * sample[name].ndim
        )
        for name in dict.fromkeys(n for n in node.input if n and n not in initializers)
    ]
    graph = helper.make_graph(
        [node],
        f"single_{node.name}",
        inputs,
        [helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)],
        [initializers[n] for n in dict.fromkeys(node.input) if n in initializers],
    )
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    return single


def rank_nodes(
    graph_path: Path, recipe: Recipe, feeds: Sequence[Mapping[str, np.ndarray]]
) -> list[NodeError]:
    """Nodes the recipe quantizes (those it does not already keep in fp32), most sensitive first.

    Args:
        graph_path: The (fused) fp32 graph the recipe quantizes.
        recipe: The recipe; each one-node graph is built with its own `build` (a static recipe
            calibrates on the node's captured inputs).
        feeds: Calibration batches (onnxruntime inputs of training-sentence windows).
    """
    import onnxruntime

    model = onnx.load(str(graph_path))
    kept = set(recipe.options.exclude_nodes)
    nodes = [n for n in quantizable_nodes(model, recipe.options.op_types) if n.name not in kept]
    if not nodes or not feeds:
        return []
    captured = capture_inputs(model, nodes, feeds)
    single = replace(recipe, options=replace(recipe.options, exclude_nodes=(), exclude_head=False))
    ranked = []
    with tempfile.TemporaryDirectory(prefix="ner-sensitivity-") as scratch_name:
        scratch = Path(scratch_name)
        for index, node in enumerate(nodes):
            fp32_path, int8_path = scratch / f"{index}.onnx", scratch / f"{index}.int8.onnx"
            onnx.save(_single_node_model(model, node, captured[0]), str(fp32_path))
            inputs = [n for n in dict.fromkeys(node.input) if n in captured[0]]
            single.build(fp32_path, int8_path, [{n: values[n] for n in inputs} for values in captured])
            sessions = [
                onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                for p in (fp32_path, int8_path)
            ]
            names = [i.name for i in sessions[0].get_inputs()]
            error = reference = 0.0
            for values in captured:
                feed = {name: values[name] for name in names}
                expected, got = (s.run(None, feed)[0].astype(np.float64) for s in sessions)
                error += float(np.square(got - expected).sum())
                reference += float(np.square(expected).sum())
            ranked.append(NodeError(node.name, node.op_type, float(np.sqrt(error / max(reference, 1e-30)))))
    return sorted(ranked, key=lambda e: e.relative_error, reverse=True)
