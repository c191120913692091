"""Graph optimisation and int8 quantization (dynamic, or static QDQ) of an exported emissions graph.

Dynamic quantization stores weights as int8 and quantizes activations on the fly, which needs no
calibration data and speeds up the matrix products that dominate a transformer on CPU. Static QDQ
quantization fixes the activation scales from calibration batches (training sentences) instead.
The transformer graph optimiser runs first: fused attention and layer-norm nodes quantize and run
faster than the loose ops the exporter writes. Which options a model gets is decided by the recipe
search (`ner_lightning.onnx.recipes`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from ner_lightning.errors import ExportError
from ner_lightning.onnx.first_token import FIRST_TOKEN_MODES, FirstToken

log = logging.getLogger(__name__)

#: Quantization methods: weights int8 + activations quantized per batch, or calibrated QDQ.
METHODS: tuple[str, ...] = ("dynamic", "static")

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
        method: `dynamic` (activation scales per batch) or `static` (QDQ, scales from calibration batches).
        first_token: How the matrix products whose int8 step the window's first token sets treat its row:
            `scaled` (scaled down before the product and back after, exact in fp32, about free),
            `split` (quantized on its own scale, about 5 % slower) or `shared` (onnxruntime's plain
            quantization). Needs calibration batches (`ner_lightning.onnx.first_token`).
    """

    optimize: bool = True
    per_channel: bool = True
    weight_type: Literal["qint8", "quint8"] = "qint8"
    reduce_range: bool = True
    op_types: tuple[str, ...] = DEFAULT_OP_TYPES
    exclude_nodes: tuple[str, ...] = field(default_factory=tuple)
    exclude_head: bool = False
    method: Literal["dynamic", "static"] = "dynamic"
    first_token: FirstToken = "scaled"

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

    Walks back from the graph output through shape-preserving ops (Add of the bias, Identity),
    following the input another node computes, to the first MatMul/Gemm.
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
        # The exporter may write the bias first (`Add(bias, x)`): follow the computed input.
        computed = [i for i in node.input if i in producer]
        if not computed:
            return []
        name = computed[0]
    return []


class FeedsReader:
    """onnxruntime `CalibrationDataReader` over prepared input batches (static quantization).

    Args:
        feeds: Input name -> array, one mapping per calibration batch.
    """

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self._iterator: Iterator[Mapping[str, np.ndarray]] = iter(self.feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when exhausted (onnxruntime's protocol)."""
        batch = next(self._iterator, None)
        return dict(batch) if batch is not None else None

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._iterator = iter(self.feeds)


def quantize_model(
    source: Path,
    target: Path,
    options: QuantizeOptions,
    calibration: Sequence[Mapping[str, np.ndarray]] = (),
) -> None:
    """Quantize `source` to int8 (dynamic or static QDQ, per `options.method`) into `target`.

    Args:
        source: fp32 (optionally fused) ONNX file.
        target: Where to write the int8 graph.
        options: The recipe's options.
        calibration: Input batches that fix the activation scales of static quantization.

    Raises:
        ExportError: onnxruntime could not quantize the graph, or static quantization lacks batches.
    """
    from onnxruntime.quantization import QuantType

    weight_type = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}.get(options.weight_type)
    if weight_type is None:
        raise ExportError(
            f"unknown weight type {options.weight_type!r}", field="weight_type", fix="use qint8 or quint8"
        )
    exclude = list(options.exclude_nodes)
    if options.exclude_head:
        exclude += head_node_names(source)
    if options.method not in METHODS:
        raise ExportError(
            f"unknown quantization method {options.method!r}", field="method", fix="use dynamic or static"
        )
    if options.first_token not in FIRST_TOKEN_MODES:
        raise ExportError(
            f"unknown first-token mode {options.first_token!r}",
            field="first_token",
            fix=f"use one of: {', '.join(FIRST_TOKEN_MODES)}",
        )
    with _first_token_rewritten(source, target, options, exclude, calibration) as graph, _quiet_root_logger():
        if options.method == "static":
            _quantize_static(graph, target, options, weight_type, exclude, calibration)
        else:
            _quantize_dynamic(graph, target, options, weight_type, exclude)


@contextlib.contextmanager
def _first_token_rewritten(
    source: Path,
    target: Path,
    options: QuantizeOptions,
    exclude: Sequence[str],
    calibration: Sequence[Mapping[str, np.ndarray]],
) -> Iterator[Path]:
    """`source`, or a scratch copy whose first-token-dominated products are rewritten (removed after)."""
    from ner_lightning.onnx import first_token

    if options.first_token == "shared":
        yield source
        return
    if not calibration:
        raise ExportError(
            f"first_token={options.first_token!r} needs calibration batches to find the inputs the first "
            "token dominates",
            field="first_token",
            fix="pass calibration batches (ner-convert takes them from train.jsonl) or use first_token='shared'",
        )
    model = onnx.load(str(source))
    factors = first_token.treated_inputs(
        first_token.first_row_ratios(model, calibration, exclude), options.first_token
    )
    if not factors:
        yield source
        return
    scratch = target.with_name(f"{target.stem}.first-token.onnx")
    try:
        onnx.save(first_token.rewrite(model, factors, options.first_token), str(scratch))
        yield scratch
    finally:
        scratch.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer warns on the root logger for every run ("consider pre-processing")."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_dynamic(
    source: Path, target: Path, options: QuantizeOptions, weight_type: Any, exclude: list[str]
) -> None:
    """Dynamic quantization (weights int8, activation scales per batch)."""
    from onnxruntime.quantization import quantize_dynamic

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


def _quantize_static(
    source: Path,
    target: Path,
    options: QuantizeOptions,
    weight_type: Any,
    exclude: list[str],
    calibration: Sequence[Mapping[str, np.ndarray]],
) -> None:
    """Static QDQ quantization with activation ranges (min/max) from the calibration batches."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ExportError(
            "static quantization needs calibration batches",
            field="calibration",
            fix="pass a dataset folder with a train split (--data)",
        )
    # Fused Attention has no QDQ kernel; static recipes quantize the matrix products only.
    op_types = [op for op in options.op_types if op != "Attention"]
    try:
        quantize_static(
            source,
            target,
            FeedsReader(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=options.per_channel,
            reduce_range=options.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=weight_type,
            nodes_to_exclude=exclude or None,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    except Exception as error:  # onnxruntime raises bare exceptions of many types
        raise ExportError(
            f"static int8 quantization of {source} failed: {error}",
            path=source,
            fix="drop the static recipe from --recipes",
        ) from error


def file_size_mb(path: Path, extra: Sequence[Path] = ()) -> float:
    """Size of a model file (plus any external-data files) in MiB."""
    return (path.stat().st_size + sum(p.stat().st_size for p in extra)) / 2**20
