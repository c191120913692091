"""Inference benchmark as users compare: the Hugging Face pipeline vs the project's ONNX fp32 and int8.

Every side gets the same raw texts (the sentences of a split joined with spaces), the same thread
count, and answers with entities (type and character span); entity F1 is scored the same way for
all sides by mapping each entity's characters onto the gold words. The sides:

- **HF pipeline, PyTorch fp32**: `transformers.pipeline("token-classification",
  aggregation_strategy="first")` over an `AutoModelForTokenClassification` that holds the
  checkpoint's fine-tuned backbone and emission head (the same weights as the ONNX sides; the
  pipeline decodes by argmax, so a CRF model loses its transition scores there). This is the 1.00x row.
- **project, ONNX fp32** and **project, ONNX int8**: `OnnxTagger.predict` on the exported and the
  converted model folders.

For each thread count (`torch.set_num_threads` and onnxruntime's intra-op threads), the sides run in
alternating order, `--repeats` times, each time over all texts at batch 1 and at `--batch-size`; the
ratios are medians of the per-repetition ratios to the HF side (paired, so machine load cancels).
A profile of the project's sides then shows where the time goes: the share of `session.run`,
tokenization and windowing, padding the inputs, decoding and the rest, and onnxruntime's own
per-operator-type profile; a budget sweep measures the tagger's token budget (the batch shape).

    python -m benchmarks.inference --checkpoint <out>/checkpoints/best.ckpt \\
        --model-dir <int8 folder from ner-convert> --data <dataset folder> --threads 1 2

Without `--model-dir` the int8 folder is converted here (`ner_lightning.onnx.convert`); without
`--fp32-dir` the fp32 folder is `<training output>/onnx` or exported here. `--quick` runs a few
sentences with one repeat (a smoke test of the script, numbers meaningless).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import cpu_isa, machine_description
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.scoring import entity_scores
from ner_lightning.contract import MODEL_METADATA_FILE, ONNX_DIR, ONNX_MODEL_FILE, OUTSIDE_TAG, TEST_SPLIT

HF_SIDE = "HF pipeline, PyTorch fp32"
FP32_SIDE = "project, ONNX fp32"
INT8_SIDE = "project, ONNX int8"
#: Acceptance targets (issue 13): int8 vs HF at batch 1 and batched, int8 vs the project's fp32.
TARGET_B1, TARGET_BATCHED, TARGET_VS_FP32 = 5.0, 4.0, 2.5


@dataclass(frozen=True)
class Entity:
    """An entity as every side reports it: type and character span `[start, end)` of the text."""

    type: str
    start: int
    end: int


#: Texts in, entities out: the interface every side is measured through.
Tagger = Callable[[Sequence[str], int], list[list[Entity]]]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.inference", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--checkpoint", required=True, help="ner-lightning checkpoint (weights of every side)"
    )
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
        "--batch-size", type=int, default=32, help="texts per call in the batched measurement"
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="alternating timed passes per side (medians reported)"
    )
    parser.add_argument(
        "--budgets",  # sweep repeats: min(--repeats, 3)
        type=int,
        nargs="*",
        default=[64, 128, 256, 512, 1024, 2048],
        help="token budgets of the batch-shape sweep (none: skip it)",
    )
    parser.add_argument("--quick", action="store_true", help="a few sentences, one repeat (tests the script)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR), help="where inference[_quick].md/.json go")
    return parser


# --- texts and scoring ------------------------------------------------------------------------
def join_words(words: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The raw text of a tokenized sentence (words joined by one space) and each word's span."""
    spans, cursor = [], 0
    for word in words:
        spans.append((cursor, cursor + len(word)))
        cursor += len(word) + 1
    return " ".join(words), spans


def word_tags(spans: Sequence[tuple[int, int]], entities: Sequence[Entity]) -> list[str]:
    """IOB2 tags of the gold words from character-span entities: the words an entity overlaps."""
    tags = [OUTSIDE_TAG] * len(spans)
    for entity in sorted(entities, key=lambda e: (e.start, e.end)):
        covered = [i for i, (start, end) in enumerate(spans) if start < entity.end and entity.start < end]
        for position, index in enumerate(covered):
            tags[index] = f"{'B' if position == 0 else 'I'}-{entity.type}"
    return tags


# --- the sides --------------------------------------------------------------------------------
def hf_token_classifier(model: Any) -> Any:
    """An `AutoModelForTokenClassification` holding a `TokenClassifier`'s backbone and emission head."""
    import copy

    from transformers import AutoModelForTokenClassification

    config = copy.deepcopy(model.backbone.config)
    config.num_labels = len(model.label_names)
    config.id2label = dict(enumerate(model.label_names))
    config.label2id = {label: index for index, label in enumerate(model.label_names)}
    hf_model = AutoModelForTokenClassification.from_config(config)
    hf_model.base_model.load_state_dict(model.backbone.state_dict(), strict=True)
    hf_model.classifier.load_state_dict(model.head.linear.state_dict(), strict=True)
    return hf_model.eval()


def hf_side(model: Any, tokenizer: Any) -> Tagger:
    """`pipeline("token-classification")` on the checkpoint's weights, texts in, entities out."""
    from transformers import pipeline

    pipe = pipeline(
        "token-classification",
        model=hf_token_classifier(model),
        tokenizer=tokenizer,
        aggregation_strategy="first",
        device="cpu",
    )

    def tag(texts: Sequence[str], batch_size: int) -> list[list[Entity]]:
        outputs = pipe(list(texts), batch_size=batch_size)
        return [[Entity(e["entity_group"], int(e["start"]), int(e["end"])) for e in out] for out in outputs]

    return tag


def onnx_side(tagger: Any) -> Tagger:
    """`OnnxTagger.predict`, texts in, entities out (the tagger batches a call's windows itself)."""

    def tag(texts: Sequence[str], batch_size: int) -> list[list[Entity]]:
        return [
            [Entity(e.type, int(e.start), int(e.end)) for e in tagged.entities]
            for tagged in tagger.predict(list(texts))
        ]

    return tag


# --- timing -----------------------------------------------------------------------------------
def timed_pass(tag: Tagger, texts: Sequence[str], batch_size: int) -> tuple[float, list[list[Entity]]]:
    """Seconds to tag every text in calls of `batch_size` texts, and the entities."""
    entities: list[list[Entity]] = []
    start = time.perf_counter()
    for begin in range(0, len(texts), batch_size):
        entities += tag(texts[begin : begin + batch_size], batch_size)
    return time.perf_counter() - start, entities


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def measure_sides(
    sides: dict[str, Tagger], texts: Sequence[str], batch_size: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Alternate the sides `repeats` times over all texts at batch 1 and `batch_size`.

    Returns, per side: per-repetition seconds at both batch sizes, batch-1 latencies and the
    entities of the batched pass.
    """
    results: dict[str, dict[str, Any]] = {
        name: {"b1": [], "batched": [], "latencies": [], "entities": []} for name in sides
    }
    for tag in sides.values():  # warm-up: lazy initialisation, allocator, kernel selection
        tag(texts[:batch_size], batch_size)
        tag(texts[:1], 1)
    names = list(sides)
    for repeat in range(repeats):
        # Rotate the order so no side always runs first (right after another side warmed the caches).
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            seconds, entities = timed_pass(sides[name], texts, batch_size)
            results[name]["batched"].append(seconds)
            results[name]["entities"] = entities
            latencies = []
            for text in texts:
                start = time.perf_counter()
                sides[name]([text], 1)
                latencies.append(time.perf_counter() - start)
            results[name]["b1"].append(sum(latencies))
            results[name]["latencies"] += latencies
    return results


def table_rows(
    threads: int,
    results: dict[str, dict[str, Any]],
    count: int,
    batch_size: int,
    gold: Sequence[Sequence[str]],
    spans: Sequence[Sequence[tuple[int, int]]],
    sizes: dict[str, float],
) -> list[dict[str, Any]]:
    """One row per side: throughputs, paired ratios to the HF side, latency, size and F1."""
    base = results[HF_SIDE]
    rows = []
    for name, result in results.items():

        def paired(key: str, result: dict[str, Any] = result) -> float:
            return statistics.median(b / s for b, s in zip(base[key], result[key], strict=True))

        predicted = [word_tags(s, e) for s, e in zip(spans, result["entities"], strict=True)]
        b1 = count / statistics.median(result["b1"])
        batched = count / statistics.median(result["batched"])
        rows.append(
            {
                "threads": threads,
                "side": name,
                "sent_per_s_b1": b1,
                "x_b1": paired("b1"),
                f"sent_per_s_b{batch_size}": batched,
                f"x_b{batch_size}": paired("batched"),
                f"b{batch_size}_over_b1": batched / b1,
                "p50_ms_b1": 1000 * _percentile(result["latencies"], 50),
                "p95_ms_b1": 1000 * _percentile(result["latencies"], 95),
                "size_mb": sizes[name],
                "f1": entity_scores(gold, predicted)["f1"],
                "seconds_b1": result["b1"],
                f"seconds_b{batch_size}": result["batched"],
            }
        )
    int8, fp32 = results[INT8_SIDE], results[FP32_SIDE]
    for key, column in (("b1", "int8_over_fp32_b1"), ("batched", f"int8_over_fp32_b{batch_size}")):
        ratio = statistics.median(f / i for f, i in zip(fp32[key], int8[key], strict=True))
        rows[-1][column] = ratio
    return rows


# --- profiles ---------------------------------------------------------------------------------
def stage_profile(tagger: Any, texts: Sequence[str], batch_size: int) -> dict[str, Any]:
    """Where one pass of `OnnxTagger.predict` spends its time, by pipeline stage.

    Times `session.run` (`emissions`), tokenization and windowing (`windows`), input padding
    (`batch_inputs`) and decoding (`decode_emissions`) by wrapping the instance's methods; the rest
    (word splitting, merging windows, entity spans) is what remains of the total. Also counts the
    real and the padded tokens fed to the graph.
    """
    spent: dict[str, float] = defaultdict(float)
    tokens = {"real": 0, "padded": 0, "calls": 0}
    stages = {
        "session.run": "emissions",
        "tokenize + window": "windows",
        "pad inputs": "batch_inputs",
        "decode": "decode_emissions",
    }
    originals = {attr: getattr(tagger, attr) for attr in stages.values()}

    def wrap(stage: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            out = method(*args)
            spent[stage] += time.perf_counter() - start
            if stage == "pad inputs":
                tokens["real"] += int(out["attention_mask"].sum())
                tokens["padded"] += int(out["attention_mask"].size)
                tokens["calls"] += 1
            return out

        return timed

    for stage, attr in stages.items():
        setattr(tagger, attr, wrap(stage, originals[attr]))
    try:
        total, _ = timed_pass(onnx_side(tagger), texts, batch_size)
    finally:
        for attr in stages.values():
            delattr(tagger, attr)  # back to the class's methods
    shares = {stage: spent[stage] / total for stage in stages}
    shares["other (split words, merge, entities)"] = 1.0 - sum(shares.values())
    return {
        "seconds": total,
        "shares": shares,
        "padding_ratio": 1.0 - tokens["real"] / max(1, tokens["padded"]),
        "graph_calls": tokens["calls"],
        "real_tokens": tokens["real"],
    }


def operator_profile(
    tagger: Any, model_path: Path, texts: Sequence[str], batch_size: int, scratch: Path
) -> dict[str, float]:
    """Share of onnxruntime's kernel time per operator type over one pass (onnxruntime profiling)."""
    import onnxruntime

    from ner_lightning.onnx.predictor import session_options

    options = session_options(tagger.threads)
    options.enable_profiling = True
    options.profile_file_prefix = str(scratch / f"ort-{model_path.parent.name}")
    original = tagger.session
    tagger.session = onnxruntime.InferenceSession(
        str(model_path), options, providers=["CPUExecutionProvider"]
    )
    try:
        timed_pass(onnx_side(tagger), texts, batch_size)
        profile_file = tagger.session.end_profiling()
    finally:
        tagger.session = original
    per_type: dict[str, float] = defaultdict(float)
    for event in json.loads(Path(profile_file).read_text(encoding="utf-8")):
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            per_type[event["args"]["op_name"]] += float(event["dur"])
    total = sum(per_type.values()) or 1.0
    return {op: dur / total for op, dur in sorted(per_type.items(), key=lambda item: -item[1])}


def budget_sweep(
    taggers: dict[str, Any], texts: Sequence[str], batch_size: int, budgets: Sequence[int], repeats: int
) -> list[dict[str, Any]]:
    """Sentences/s of each ONNX side per token budget (alternating budgets, median of `repeats`)."""
    times: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    saved = {name: tagger.token_budget for name, tagger in taggers.items()}
    sizes = [1, batch_size]
    try:
        for _ in range(repeats):
            for name, tagger in taggers.items():
                for budget in budgets:
                    tagger.token_budget = budget
                    for size in sizes:
                        seconds, _ = timed_pass(onnx_side(tagger), texts, size)
                        times[(name, budget, size)].append(seconds)
    finally:
        for name, tagger in taggers.items():
            tagger.token_budget = saved[name]
    rows = []
    for name in taggers:
        for budget in budgets:
            row: dict[str, Any] = {"side": name, "token_budget": budget}
            for size in sizes:
                row[f"sent_per_s_b{size}"] = len(texts) / statistics.median(times[(name, budget, size)])
            rows.append(row)
    return rows


# --- main -------------------------------------------------------------------------------------
def _target_notes(rows: Sequence[dict[str, Any]], batch_size: int) -> list[str]:
    """Sentences saying, per thread count, whether each target is met and by how much it is missed."""
    notes = []
    batched = f"x_b{batch_size}"

    def verdict(value: float, target: float) -> str:
        return (
            "met"
            if value >= target
            else f"missed by {target - value:.2f}x ({100 * value / target:.0f}% of it)"
        )

    for row in rows:
        if row["side"] == INT8_SIDE:
            t = row["threads"]
            notes.append(
                f"{t} thread(s): int8 vs HF {row['x_b1']:.2f}x at batch 1 (target >= {TARGET_B1}x: "
                f"{verdict(row['x_b1'], TARGET_B1)}), {row[batched]:.2f}x at batch {batch_size} "
                f"(target >= {TARGET_BATCHED}x: {verdict(row[batched], TARGET_BATCHED)}); int8 vs ONNX fp32 "
                f"{row['int8_over_fp32_b1']:.2f}x / {row[f'int8_over_fp32_b{batch_size}']:.2f}x "
                f"(target >= {TARGET_VS_FP32}x: {verdict(row['int8_over_fp32_b1'], TARGET_VS_FP32)} / "
                f"{verdict(row[f'int8_over_fp32_b{batch_size}'], TARGET_VS_FP32)})"
            )
        if row["side"] != HF_SIDE:
            ratio = row[f"b{batch_size}_over_b1"]
            notes.append(
                f"{row['threads']} thread(s), {row['side']}: batch {batch_size} is {ratio:.2f}x batch 1 per "
                f"sentence ({'met' if ratio >= 1.0 else 'missed'}: target >= 1.00x)"
            )
    return notes


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write `inference[_quick].md/.json`; returns the tables."""
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sentences, args.repeats = args.sentences or 16, 1
        args.budgets = args.budgets[:2]

    import torch

    from benchmarks.corpus import prepare_dataset
    from benchmarks.measure import set_threads
    from ner_lightning.data.datamodule import load_tokenizer
    from ner_lightning.data.records import load_dataset_folder
    from ner_lightning.model.module import TokenClassifier
    from ner_lightning.onnx.convert import convert
    from ner_lightning.onnx.export import export_onnx
    from ner_lightning.onnx.predictor import OnnxTagger

    checkpoint = Path(args.checkpoint)
    training_output = checkpoint.parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch_name:
        scratch = Path(scratch_name)
        data_dir = prepare_dataset(args.data, scratch / "data")
        examples = load_dataset_folder(data_dir).splits[args.split]
        if args.sentences:
            examples = examples[: args.sentences]
        joined = [join_words(e.tokens) for e in examples]
        texts = [text for text, _ in joined]
        spans = [word_spans for _, word_spans in joined]
        gold = [list(e.tags) for e in examples]

        model = TokenClassifier.load_checkpoint(checkpoint).eval()
        data_hparams = dict(
            torch.load(checkpoint, map_location="cpu", weights_only=True).get("datamodule_hyper_parameters")
            or {}
        )
        fp32_dir = Path(args.fp32_dir) if args.fp32_dir else training_output / ONNX_DIR
        # The tokenizer exported next to the model, as ner-convert takes it: the path a checkpoint records
        # can be another job's input mount, gone once that job ended.
        exported = fp32_dir if (fp32_dir / "tokenizer.json").is_file() else None
        tokenizer = load_tokenizer(str(exported or data_hparams.get("tokenizer") or model.hparams.backbone))
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
        quantization = json.loads((int8_dir / MODEL_METADATA_FILE).read_text(encoding="utf-8")).get(
            "quantization"
        )
        sizes = {
            HF_SIDE: sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
            FP32_SIDE: (fp32_dir / ONNX_MODEL_FILE).stat().st_size / 2**20,
            INT8_SIDE: (int8_dir / ONNX_MODEL_FILE).stat().st_size / 2**20,
        }
        hf = hf_side(model, tokenizer)
        rows: list[dict[str, Any]] = []
        stages: list[dict[str, Any]] = []
        operators: list[dict[str, Any]] = []
        sweep: list[dict[str, Any]] = []
        for threads in args.threads:
            print(f"measuring at {threads} thread(s)", file=sys.stderr, flush=True)
            set_threads(threads)
            taggers = {
                FP32_SIDE: OnnxTagger(fp32_dir, threads=threads),
                INT8_SIDE: OnnxTagger(int8_dir, threads=threads),
            }
            sides = {HF_SIDE: hf, **{name: onnx_side(tagger) for name, tagger in taggers.items()}}
            with torch.inference_mode():
                results = measure_sides(sides, texts, args.batch_size, args.repeats)
            rows += table_rows(threads, results, len(texts), args.batch_size, gold, spans, sizes)
            for name, tagger in taggers.items():
                for size in (1, args.batch_size):
                    profile = stage_profile(tagger, texts, size)
                    stages.append(
                        {
                            "threads": threads,
                            "side": name,
                            "batch": size,
                            **{f"{k} %": 100 * v for k, v in profile["shares"].items()},
                            "padding %": 100 * profile["padding_ratio"],
                            "graph calls": profile["graph_calls"],
                        }
                    )
                shares = operator_profile(
                    tagger, tagger.model_dir / ONNX_MODEL_FILE, texts, args.batch_size, scratch
                )
                operators.append(
                    {
                        "threads": threads,
                        "side": name,
                        "batch": args.batch_size,
                        **{f"{k} %": 100 * v for k, v in shares.items()},
                    }
                )
            if args.budgets:
                for row in budget_sweep(taggers, texts, args.batch_size, args.budgets, min(args.repeats, 3)):
                    sweep.append({"threads": threads, **row})

    batched = f"x_b{args.batch_size}"
    columns = [
        "threads",
        "side",
        "sent_per_s_b1",
        "x_b1",
        f"sent_per_s_b{args.batch_size}",
        batched,
        f"b{args.batch_size}_over_b1",
        "p50_ms_b1",
        "p95_ms_b1",
        "size_mb",
        "f1",
    ]
    stage_columns = list(dict.fromkeys(key for row in stages for key in row))
    top_ops = _top_operator_columns(operators)
    tables = {
        "Results (ratios: median of per-repetition ratios to the HF pipeline at the same thread count)": (
            rows,
            columns,
        ),
        "Where the project's time goes (share of one pass)": (stages, stage_columns),
        "onnxruntime kernel time by operator type (batched pass)": (
            operators,
            ["threads", "side", "batch", *top_ops],
        ),
    }
    if sweep:
        tables["Batch shape: token budget sweep (sentences/s)"] = (
            sweep,
            ["threads", "side", "token_budget", "sent_per_s_b1", f"sent_per_s_b{args.batch_size}"],
        )
    conditions = {
        "command": "python -m benchmarks.inference " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": str(checkpoint),
        "backbone": model.hparams.backbone,
        "use_crf": model.crf is not None,
        "data": args.data,
        "split": args.split,
        "sentences": len(texts),
        "threads": args.threads,
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "hf_pipeline": 'pipeline("token-classification", aggregation_strategy="first"), torch fp32, inference_mode',
        "quantization": quantization,
        "cpu_isa": cpu_isa(),
        **machine_description(),
    }
    name = "inference_quick" if args.quick else "inference"
    md_path, _ = write_results(
        name,
        "Inference: HF pipeline (PyTorch fp32) vs project ONNX fp32 vs ONNX int8, texts in, entities out",
        tables,
        conditions,
        args.results_dir,
        _target_notes(rows, args.batch_size),
    )
    print(md_path.read_text(encoding="utf-8"))
    return {"rows": rows, "stages": stages, "operators": operators, "sweep": sweep, "conditions": conditions}


def _top_operator_columns(operators: Sequence[dict[str, Any]], count: int = 8) -> list[str]:
    """The operator-type columns with the largest share anywhere (the markdown table shows these)."""
    best: dict[str, float] = defaultdict(float)
    for row in operators:
        for key, value in row.items():
            if key.endswith(" %"):
                best[key] = max(best[key], value)
    return sorted(best, key=lambda key: -best[key])[:count]


if __name__ == "__main__":
    main()
