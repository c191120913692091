"""Inference benchmark: PyTorch fp32 eager vs ONNX fp32 vs ONNX int8 on the same sentences, one run.

For each side it measures the whole word-level pipeline (tokenize, window, run, decode): sentences
per second at batch 1 and batch 32, p50/p95 latency at batch 1, model size, and entity F1 against
the gold tags; the table gives every throughput as a ratio to PyTorch fp32.

    python -m benchmarks.inference --checkpoint <out>/checkpoints/best.ckpt \
        --model-dir <int8 folder from ner-convert> --data ../shared/data/wnut17 --threads 2

Without `--model-dir` the int8 folder is converted here (`ner_lightning.onnx.convert`); without
`--fp32-dir` the fp32 folder is `<training output>/onnx` or exported here. `--quick` runs a few
sentences with one repeat (a smoke test of the script, numbers meaningless).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import machine_description, set_threads
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.scoring import entity_scores
from ner_lightning.contract import MODEL_METADATA_FILE, ONNX_DIR, ONNX_MODEL_FILE, TEST_SPLIT

Tagger = Callable[[Sequence[Sequence[str]]], list[list[str]]]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--checkpoint", required=True, help="ner-lightning checkpoint (the PyTorch side)")
    parser.add_argument("--model-dir", help="int8 model folder from ner-convert (converted here when absent)")
    parser.add_argument(
        "--fp32-dir", help="fp32 ONNX model folder (default <training output>/onnx, else exported here)"
    )
    parser.add_argument(
        "--data", required=True, help="dataset folder or CoNLL corpus folder (e.g. ../shared/data/wnut17)"
    )
    parser.add_argument("--split", default=TEST_SPLIT, help="split to tag (default test)")
    parser.add_argument("--sentences", type=int, default=0, help="use the first N sentences (0: all)")
    parser.add_argument(
        "--latency-sentences", type=int, default=300, help="sentences timed one by one at batch 1"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="sentences per call in the batched measurement"
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for torch and onnxruntime")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed passes per measurement (median reported)"
    )
    parser.add_argument("--quick", action="store_true", help="a few sentences, one repeat (tests the script)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="where inference[_quick].md/.json go")
    return parser


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(
    tag: Tagger,
    sentences: Sequence[Sequence[str]],
    latency: Sequence[Sequence[str]],
    batch_size: int,
    repeats: int,
) -> dict[str, Any]:
    """Throughput at batch 1 and `batch_size`, batch-1 latency percentiles, and the tags of `sentences`."""
    tag(sentences[:batch_size])  # warm-up: lazy initialisation, allocator, kernel selection
    batched_times = []
    tags: list[list[str]] = []
    for _ in range(repeats):
        tags = []
        start = time.perf_counter()
        for begin in range(0, len(sentences), batch_size):
            tags += tag(sentences[begin : begin + batch_size])
        batched_times.append(time.perf_counter() - start)
    single_rounds = []
    latencies: list[float] = []
    for _ in range(repeats):
        round_latencies = []
        for sentence in latency:
            start = time.perf_counter()
            tag([sentence])
            round_latencies.append(time.perf_counter() - start)
        single_rounds.append(sum(round_latencies))
        latencies += round_latencies
    return {
        "tags": tags,
        f"sent_per_s_b{batch_size}": len(sentences) / statistics.median(batched_times),
        "sent_per_s_b1": len(latency) / statistics.median(single_rounds),
        "p50_ms_b1": 1000 * _percentile(latencies, 50),
        "p95_ms_b1": 1000 * _percentile(latencies, 95),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write `inference[_quick].md/.json`; returns the rows."""
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sentences, args.latency_sentences, args.repeats = (
            args.sentences or 16,
            min(args.latency_sentences, 8),
            1,
        )
    set_threads(args.threads)

    import torch

    from benchmarks.corpus import prepare_dataset
    from ner_lightning.data.datamodule import load_tokenizer
    from ner_lightning.data.records import load_dataset_folder
    from ner_lightning.model.module import TokenClassifier
    from ner_lightning.onnx.convert import convert
    from ner_lightning.onnx.export import export_onnx
    from ner_lightning.onnx.predictor import OnnxTagger
    from ner_lightning.onnx.smoke import TorchTagger

    checkpoint = Path(args.checkpoint)
    training_output = checkpoint.parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch_name:
        scratch = Path(scratch_name)
        data_dir = prepare_dataset(args.data, scratch / "data")
        examples = load_dataset_folder(data_dir).splits[args.split]
        if args.sentences:
            examples = examples[: args.sentences]
        sentences = [list(e.tokens) for e in examples]
        gold = [list(e.tags) for e in examples]
        latency = sentences[: args.latency_sentences]

        model = TokenClassifier.load_checkpoint(checkpoint)
        data_hparams = dict(
            torch.load(checkpoint, map_location="cpu", weights_only=True).get("datamodule_hyper_parameters")
            or {}
        )
        tokenizer = load_tokenizer(data_hparams.get("tokenizer") or model.hparams.backbone)
        fp32_dir = Path(args.fp32_dir) if args.fp32_dir else training_output / ONNX_DIR
        if not (fp32_dir / ONNX_MODEL_FILE).is_file():
            fp32_dir = export_onnx(
                model,
                tokenizer,
                scratch / "fp32",
                max_length=int(data_hparams.get("max_length", 128)),
                stride=int(data_hparams.get("stride", 32)),
            )
        int8_dir = Path(args.model_dir) if args.model_dir else None
        if int8_dir is None:
            int8_dir = scratch / "int8"
            convert(
                training_output, int8_dir, data_dir=str(data_dir), checkpoint=checkpoint, f1_tolerance=1.0
            )

        fp32 = OnnxTagger(fp32_dir, batch_size=args.batch_size, intra_op_threads=args.threads)
        int8 = OnnxTagger(int8_dir, batch_size=args.batch_size, intra_op_threads=args.threads)
        reference = TorchTagger(model, tokenizer, fp32.max_length, fp32.stride, batch_size=args.batch_size)
        torch_size = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        sides: list[tuple[str, Tagger, float]] = [
            ("PyTorch fp32 (eager)", lambda s: reference.tag_words(s, model.label_names), torch_size),
            ("ONNX fp32", fp32.tag_words, (fp32_dir / ONNX_MODEL_FILE).stat().st_size / 2**20),
            ("ONNX int8", int8.tag_words, (int8_dir / ONNX_MODEL_FILE).stat().st_size / 2**20),
        ]
        rows = []
        for name, tag, size in sides:
            with torch.inference_mode():
                result = measure(tag, sentences, latency, args.batch_size, args.repeats)
            rows.append(
                {
                    "side": name,
                    **{k: v for k, v in result.items() if k != "tags"},
                    "size_mb": size,
                    "f1": entity_scores(gold, result["tags"])["f1"],
                }
            )
        base = rows[0]
        batched = f"sent_per_s_b{args.batch_size}"
        for row in rows:
            row["x_b1"] = row["sent_per_s_b1"] / base["sent_per_s_b1"]
            row[f"x_b{args.batch_size}"] = row[batched] / base[batched]
            row["f1_drop_points"] = 100 * (base["f1"] - row["f1"])
        import json

        quantization = json.loads((int8_dir / MODEL_METADATA_FILE).read_text(encoding="utf-8")).get(
            "quantization"
        )
    columns = [
        "side",
        "sent_per_s_b1",
        "x_b1",
        batched,
        f"x_b{args.batch_size}",
        "p50_ms_b1",
        "p95_ms_b1",
        "size_mb",
        "f1",
        "f1_drop_points",
    ]
    int8_row = rows[2]
    notes = [
        f"int8 vs PyTorch fp32: {int8_row['x_b1']:.2f}x at batch 1, {int8_row[f'x_b{args.batch_size}']:.2f}x at batch "
        f"{args.batch_size} (target >= 2.5x), F1 drop {int8_row['f1_drop_points']:+.2f} points (target <= 0.5)",
    ]
    conditions = {
        "command": "python -m benchmarks.inference "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "checkpoint": str(checkpoint),
        "backbone": model.hparams.backbone,
        "use_crf": model.crf is not None,
        "data": args.data,
        "split": args.split,
        "sentences": len(sentences),
        "latency_sentences": len(latency),
        "threads": args.threads,
        "repeats": args.repeats,
        "quantization": quantization,
        **machine_description(),
    }
    name = "inference_quick" if args.quick else "inference"
    md_path, _ = write_results(
        name,
        "Inference: PyTorch fp32 vs ONNX fp32 vs ONNX int8",
        {"Results": (rows, columns)},
        conditions,
        args.results_dir,
        notes,
    )
    print(md_path.read_text(encoding="utf-8"))
    return {"rows": rows, "conditions": conditions}


if __name__ == "__main__":
    main()
