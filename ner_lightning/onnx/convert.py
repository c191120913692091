"""`ner-convert`: the CPU conversion job, training output folder -> validated int8 ONNX model folder.

Steps: read the training output (`checkpoints/best.ckpt`, and `onnx/` from the export callback,
exported here when missing), optimise the graph, quantize it dynamically to int8, then run the
smoke test (`ner_lightning.onnx.smoke`). The model folder is built in a temporary sibling folder
and renamed into place only when every check passed; it never holds a training checkpoint.

Exit codes: 0 converted, 1 a smoke check failed (the report is printed), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    INT8_SIZE_MB,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    ONNX_MODEL_FILE,
    SMOKE_REPORT_FILE,
    TEST_SPLIT,
    VALIDATION_SPLIT,
)
from ner_lightning.data.manifest import file_sha256
from ner_lightning.errors import ExportError, ModelError, NerLightningError
from ner_lightning.onnx.quantize import (
    DEFAULT_OP_TYPES,
    QuantizeOptions,
    file_size_mb,
    optimize_graph,
    quantize_model,
)

#: Files of an export folder that the conversion rewrites instead of copying.
_REWRITTEN = {ONNX_MODEL_FILE, MODEL_METADATA_FILE, SMOKE_REPORT_FILE}
#: Weight files that must never reach a model folder.
_NEVER_COPIED = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")


class SmokeTestFailed(ExportError):
    """The converted model failed one or more smoke checks (the report says which)."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `ner-convert`."""
    parser = argparse.ArgumentParser(
        prog="ner-convert",
        description="Turn a training output folder into a validated int8 ONNX model folder (CPU job).",
    )
    parser.add_argument(
        "--input", required=True, help="training output folder (checkpoints/best.ckpt, optional onnx/)"
    )
    parser.add_argument("--output", required=True, help="model folder to write (replaced atomically)")
    parser.add_argument(
        "--data", help="dataset folder: held-out sample from test.jsonl, else validation.jsonl"
    )
    parser.add_argument(
        "--checkpoint",
        help=f"checkpoint to compare against (default <input>/{CHECKPOINT_DIR}/{BEST_CHECKPOINT})",
    )
    parser.add_argument(
        "--f1-tolerance",
        type=float,
        default=0.01,
        help="largest int8 entity-F1 drop vs fp32 (absolute; 0.01 = 1 point)",
    )
    parser.add_argument(
        "--emission-atol", type=float, default=1e-3, help="largest |PyTorch - ONNX fp32| emission difference"
    )
    parser.add_argument("--sample-size", type=int, default=200, help="held-out sentences for the checks")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset when exporting here")
    parser.add_argument(
        "--max-length", type=int, help="window length when exporting here (default: the training value)"
    )
    parser.add_argument(
        "--stride", type=int, help="window overlap when exporting here (default: the training value)"
    )
    quant = parser.add_argument_group("quantization")
    quant.add_argument("--no-optimize", action="store_true", help="skip the transformer graph optimiser")
    quant.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=QuantizeOptions.per_channel,
        help="per-channel weight scales (default on)",
    )
    quant.add_argument("--weight-type", choices=["qint8", "quint8"], default="qint8")
    quant.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=QuantizeOptions.reduce_range,
        help="7-bit weights: avoids u8s8 saturation on CPUs without VNNI (default on)",
    )
    quant.add_argument(
        "--op-types", default=",".join(DEFAULT_OP_TYPES), help="comma-separated op types to quantize"
    )
    quant.add_argument("--exclude-nodes", default="", help="comma-separated node names kept in fp32")
    quant.add_argument("--exclude-head", action="store_true", help="keep the emission head in fp32")
    parser.add_argument(
        "--report", help="also write the smoke report here (useful when the conversion fails)"
    )
    return parser


def quantize_options(args: argparse.Namespace) -> QuantizeOptions:
    """The quantization options of parsed arguments."""
    return QuantizeOptions(
        optimize=not args.no_optimize,
        per_channel=args.per_channel,
        weight_type=args.weight_type,
        reduce_range=args.reduce_range,
        op_types=tuple(op for op in args.op_types.split(",") if op),
        exclude_nodes=tuple(node for node in args.exclude_nodes.split(",") if node),
        exclude_head=args.exclude_head,
    )


def _held_out(data_dir: str | None, sample_size: int) -> tuple[list[tuple[list[str], list[str]]], str]:
    """Held-out `(words, tags)` pairs (test split, else validation) and the file they came from."""
    if not data_dir:
        return [], ""
    from ner_lightning.data.records import load_dataset_folder

    dataset = load_dataset_folder(data_dir)
    split = TEST_SPLIT if dataset.splits.get(TEST_SPLIT) else VALIDATION_SPLIT
    examples = dataset.splits[split][:sample_size]
    return [(list(e.tokens), list(e.tags)) for e in examples], split


def _fallback_sample() -> list[tuple[list[str], list[str]]]:
    """Sentences for checks (a), (b) and (d) when no dataset is given (no gold: (c) compares against fp32)."""
    texts = [
        "EU rejects German call to boycott British lamb .",
        "Peter Blackburn",
        "BRUSSELS 1996-08-22",
        "The European Commission said on Thursday it disagreed with German advice to consumers to shun British lamb .",
        "Germany 's representative to the European Union 's veterinary committee Werner Zwingmann said on Wednesday .",
        "x",
    ]
    return [(t.split(), []) for t in texts]


def convert(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    data_dir: str | None = None,
    checkpoint: str | Path | None = None,
    options: QuantizeOptions | None = None,
    f1_tolerance: float = 0.01,
    emission_atol: float = 1e-3,
    sample_size: int = 200,
    opset: int = 17,
    max_length: int | None = None,
    stride: int | None = None,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Convert a training output folder into a validated int8 model folder.

    Args:
        input_dir: Training output folder (`checkpoints/best.ckpt`, optionally `onnx/`).
        output_dir: Model folder to write.
        data_dir: Dataset folder for the held-out sample (test split, else validation).
        checkpoint: Checkpoint to compare against (default `<input>/checkpoints/best.ckpt`).
        options: Quantization options.
        f1_tolerance: Largest accepted int8 entity-F1 drop against fp32.
        emission_atol: Largest accepted PyTorch vs ONNX fp32 emission difference.
        sample_size: Held-out sentences used by the checks.
        opset: ONNX opset when the export happens here.
        max_length: Window length when exporting here (default: the training value).
        stride: Window overlap when exporting here (default: the training value).
        report_path: Extra place to write the smoke report (also on failure).

    Returns:
        The smoke report (as written to `smoke_report.json`).

    Raises:
        ModelError: The checkpoint or the exported folder is missing or unusable.
        SmokeTestFailed: A smoke check failed; nothing was written at `output_dir`.
    """
    import torch

    from ner_lightning.data.datamodule import load_tokenizer
    from ner_lightning.model.module import TokenClassifier
    from ner_lightning.onnx.export import atomic_folder, export_onnx
    from ner_lightning.onnx.predictor import OnnxTagger
    from ner_lightning.onnx.smoke import TorchTagger, run_smoke_test

    options = options or QuantizeOptions()
    source = Path(input_dir)
    target = Path(output_dir)
    if not source.is_dir():
        raise ModelError(
            "the training output folder does not exist",
            path=source,
            fix="pass the folder given to --output_dir in training",
        )
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise ModelError(
            "the output folder must not be the input folder or inside it",
            path=target,
            fix="pick a separate --output",
        )
    checkpoint_path = Path(checkpoint) if checkpoint else source / CHECKPOINT_DIR / BEST_CHECKPOINT
    if not checkpoint_path.is_file():
        raise ModelError(
            "the checkpoint is missing (the smoke test compares the ONNX model against it)",
            path=checkpoint_path,
            fix="pass the training output folder that holds checkpoints/best.ckpt, or --checkpoint <file>",
        )
    model = TokenClassifier.load_checkpoint(checkpoint_path)
    label_names = list(model.label_names)
    raw = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    data_hparams = dict(raw.get("datamodule_hyper_parameters") or {})
    del raw
    # The tokenizer exported next to the fp32 model is the training tokenizer; the path recorded in
    # the checkpoint may be another job's input mount, gone once that job ended (as on Azure ML).
    exported = source / ONNX_DIR
    recorded = data_hparams.get("tokenizer") or model.hparams.backbone
    tokenizer = load_tokenizer(str(exported) if (exported / "tokenizer.json").is_file() else recorded)
    max_length = int(max_length or data_hparams.get("max_length") or 128)
    stride = int(stride if stride is not None else data_hparams.get("stride", 32))

    with tempfile.TemporaryDirectory(prefix="ner-convert-") as scratch_name:
        scratch = Path(scratch_name)
        fp32_dir = source / ONNX_DIR
        exported_here = not fp32_dir.exists()
        if exported_here:
            fp32_dir = export_onnx(
                model,
                tokenizer,
                scratch / "fp32",
                max_length=max_length,
                stride=stride,
                label_all_tokens=bool(data_hparams.get("label_all_tokens", False)),
                opset=opset,
                data_dir=data_hparams.get("data_dir"),
            )
        elif not (fp32_dir / ONNX_MODEL_FILE).is_file():
            raise ModelError(
                f"{ONNX_DIR}/ exists but holds no {ONNX_MODEL_FILE}",
                path=fp32_dir / ONNX_MODEL_FILE,
                fix=f"delete {fp32_dir} to export again from the checkpoint",
            )
        fp32 = OnnxTagger(fp32_dir)

        graph = fp32_dir / ONNX_MODEL_FILE
        fusions: list[str] = []
        if options.optimize:
            optimized = scratch / "optimized.onnx"
            config = model.backbone.config
            fusions = optimize_graph(
                graph,
                optimized,
                num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                hidden_size=int(getattr(config, "hidden_size", 0) or 0),
            )
            graph = optimized

        with atomic_folder(target) as staging:
            for item in fp32_dir.iterdir():
                if item.is_file() and item.name not in _REWRITTEN and not item.name.endswith(_NEVER_COPIED):
                    shutil.copy2(item, staging / item.name)
            quantize_model(graph, staging / ONNX_MODEL_FILE, options)
            metadata = json.loads((fp32_dir / MODEL_METADATA_FILE).read_text(encoding="utf-8"))
            metadata.update(
                precision="int8",
                quantization=options.to_json(),
                graph_fusions=fusions,
                source_checkpoint_sha256=file_sha256(checkpoint_path),
                exported_by_conversion=exported_here,
            )
            (staging / MODEL_METADATA_FILE).write_text(
                json.dumps(metadata, indent=2) + "\n", encoding="utf-8"
            )

            int8 = OnnxTagger(staging)
            held_out, split = _held_out(data_dir, sample_size)
            if not held_out:
                # Without a dataset, (c) scores int8 against fp32's own tags as the reference.
                words = [w for w, _ in _fallback_sample()]
                held_out = list(zip(words, fp32.tag_words(words), strict=True))
                split = "built-in sentences, fp32 tags as reference"
            sample = [w for w, _ in held_out]
            report = run_smoke_test(
                TorchTagger(model, tokenizer, fp32.max_length, fp32.stride),
                label_names,
                fp32,
                int8,
                sample,
                held_out,
                f1_tolerance=f1_tolerance,
                emission_atol=emission_atol,
            )
            report.context.update(
                {
                    "held_out": {
                        "data": str(data_dir) if data_dir else None,
                        "split": split,
                        "sentences": len(held_out),
                    },
                    "fp32_size_mb": round(file_size_mb(fp32_dir / ONNX_MODEL_FILE), 3),
                    "int8_size_mb": round(file_size_mb(staging / ONNX_MODEL_FILE), 3),
                    "quantization": options.to_json(),
                    "graph_fusions": fusions,
                    "checkpoint": str(checkpoint_path),
                }
            )
            if report_path:
                report.write(report_path)
            report.write(staging / SMOKE_REPORT_FILE)
            from ner_lightning.tracking import log_to_attached_run

            log_to_attached_run(_report_metrics(report.to_json()), staging / SMOKE_REPORT_FILE)
            if not report.passed:
                raise SmokeTestFailed(
                    f"smoke test failed: {', '.join(report.failed)}\n{report.summary()}",
                    path=target,
                    fix="the model folder was not written; see the checks above",
                )
    return report.to_json()


def _report_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a smoke report that the job logs to its MLflow run (also when a check failed)."""
    metrics = {INT8_SIZE_MB: report["int8_size_mb"]}
    for check in report["checks"]:
        if check["name"] == "int8_f1" and "fp32_f1" in check["numbers"]:
            metrics[HELDOUT_F1_FP32] = check["numbers"]["fp32_f1"]
            metrics[HELDOUT_F1_INT8] = check["numbers"]["int8_f1"]
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ner-convert` / `python -m ner_lightning.onnx.convert`; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        report = convert(
            args.input,
            args.output,
            data_dir=args.data,
            checkpoint=args.checkpoint,
            options=quantize_options(args),
            f1_tolerance=args.f1_tolerance,
            emission_atol=args.emission_atol,
            sample_size=args.sample_size,
            opset=args.opset,
            max_length=args.max_length,
            stride=args.stride,
            report_path=args.report,
        )
    except SmokeTestFailed as error:
        print(f"ner-convert: {error}", file=sys.stderr)
        return 1
    except NerLightningError as error:
        print(f"ner-convert: {error}", file=sys.stderr)
        return 2
    lines = [f"[PASS] {c['name']}: {c['message']}" for c in report["checks"]]
    print("\n".join(lines))
    print(
        f"ner-convert: wrote {args.output} (int8 {report['int8_size_mb']} MB, fp32 {report['fp32_size_mb']} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
