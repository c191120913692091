"""Graph optimisation and dynamic int8 quantization of an exported emissions graph.

Dynamic quantization stores weights as int8 and quantizes activations on the fly, which needs no
calibration data and speeds up the matrix products that dominate a transformer on CPU. The
transformer graph optimiser runs first: fused attention and layer-norm nodes quantize and run
faster than the loose ops the exporter writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

from ner_lightning.errors import ExportError

log = logging.getLogger(__name__)

#: Ops quantized by default: the matrix products (fused attention included). Embedding lookups stay
#: fp32: quantizing them saves size but costs accuracy and no time.
DEFAULT_OP_TYPES: tuple[str, ...] = ("MatMul", "Attention", "Gemm")


@dataclass(frozen=True)
class QuantizeOptions:
    """How to turn the fp32 graph into the int8 one.

    Args:
        optimize: Run the onnxruntime transformer graph optimiser (fusions) before quantizing.
        per_channel: Quantize weights per output channel instead of per tensor (more accurate, a bit slower).
            On by default: per-tensor scales cost MiniLM-L6 fine-tuned on WNUT16 2.2 F1 points, per-channel
            with `reduce_range` 0.2 (docs/benchmarks.md).
        weight_type: `qint8` (signed) or `quint8` (unsigned) weights.
        reduce_range: Quantize weights to 7 bits (helps accuracy on CPUs without VNNI instructions).
        op_types: Op types to quantize.
        exclude_nodes: Names of nodes to keep in fp32 (sensitive layers).
        exclude_head: Keep the emission head (the last matrix product before `emissions`) in fp32.
    """

    optimize: bool = True
    per_channel: bool = True
    weight_type: Literal["qint8", "quint8"] = "qint8"
    reduce_range: bool = True
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude_nodes: tuple[str, ...] = field(default_factory=tuple)
    exclude_head: bool = False

    def to_json(self) -> dict[str, Any]:
        """Options as written into `ner_model.json`."""
        data = asdict(self)
        data["op_types"] = list(self.op_types)
        data["exclude_nodes"] = list(self.exclude_nodes)
        return data


def optimize_graph(source: Path, target: Path, *, num_heads: int = 0, hidden_size: int = 0) -> list[str]:
    """Write a fusion-optimised copy of `source` to `target`.

    Args:
        source: fp32 ONNX file.
        target: Where to write the optimised graph.
        num_heads: Attention heads of the backbone (0: detect from the graph).
        hidden_size: Hidden size of the backbone (0: detect from the graph).

    Returns:
        The fused op types and their counts, for the report (e.g. `["Attention x2"]`).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimiser logs every fusion at WARNING level; keep the job log readable.
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=1,
        use_gpu=False,
    )
    optimized.save_model_to_file(str(target))
    counts: dict[str, int] = {}
    for node in optimized.model.graph.node:
        if node.domain == "com.microsoft":
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return [f"{op} x{count}" for op, count in sorted(counts.items())]


def head_node_names(model_path: Path, output_name: str = "emissions") -> list[str]:
    """Name of the matrix-product node that computes the emission head (`[]` if not found).

    Walks back from the graph output through shape-preserving ops (Add of the bias, Identity) to
    the first MatMul/Gemm.
    """
    graph = onnx.load(str(model_path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    name = output_name
    for _ in range(8):
        node = producer.get(name)
        if node is None:
            return []
        if node.op_type in ("MatMul", "Gemm"):
            return [node.name]
        name = node.input[0]
    return []


def quantize_model(source: Path, target: Path, options: QuantizeOptions) -> None:
    """Quantize `source` dynamically to int8 and write the result to `target`.

    Raises:
        ExportError: onnxruntime could not quantize the graph.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    weight_type = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}.get(options.weight_type)
    if weight_type is None:
        raise ExportError(
            f"unknown weight type {options.weight_type!r}", field="weight_type", fix="use qint8 or quint8"
        )
    exclude = list(options.exclude_nodes)
    if options.exclude_head:
        exclude += head_node_names(source)
    try:
        quantize_dynamic(
            source,
            target,
            op_types_to_quantize=list(options.op_types),
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            weight_type=weight_type,
            nodes_to_exclude=exclude or None,
            # Fused contrib ops (FastGelu, SkipLayerNormalization) defeat ONNX shape inference; their outputs are fp32.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except Exception as error:  # onnxruntime raises bare exceptions of many types
        raise ExportError(
            f"int8 quantization of {source} failed: {error}",
            path=source,
            fix="try --no-optimize or exclude the failing nodes with --exclude-nodes",
        ) from error


def file_size_mb(path: Path, extra: Sequence[Path] = ()) -> float:
    """Size of a model file (plus any external-data files) in MiB."""
    return (path.stat().st_size + sum(p.stat().st_size for p in extra)) / 2**20
