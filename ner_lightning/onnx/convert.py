"""`ner-convert`: the CPU conversion job, training output folder -> validated int8 ONNX model folder.

Steps: read the training output (`checkpoints/best.ckpt`, and `onnx/` from the export callback,
exported here when missing); optimise the graph; search the int8 recipes of the target ISA in
order of expected cost and keep the cheapest that meets the target, else the most accurate that
passes the gate (`ner_lightning.onnx.recipes`, `ner_lightning.onnx.gate`: every held-out sentence,
paired bootstrap interval of the F1 drop); then run the smoke test (`ner_lightning.onnx.smoke`).
The chosen recipe, the nodes kept in fp32, the candidates table, the gate's figures and the CPU it
was validated on go into `ner_model.json` (sealed, `ner_lightning.onnx.integrity`) and
`smoke_report.json`. `ner_model.json` holds what repeats when the same weights are converted again
on the same kind of CPU, so it is byte-identical between two such runs; what belongs to this run
(job paths, timings) goes only to `smoke_report.json`, the run's record. The model folder is built
in a temporary sibling folder and renamed into place only when every check passed; it never holds
a training checkpoint.

Exit codes: 0 converted, 1 a smoke check failed or no recipe passed the gate (the report and the
candidates table are printed), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ner_lightning.console import error_boundary
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    HELDOUT_F1_FP32,
    HELDOUT_F1_INT8,
    HELDOUT_GOLD_ENTITIES,
    HELDOUT_SENTENCES,
    INT8_F1_DROP,
    INT8_F1_DROP_CI_HIGH,
    INT8_F1_DROP_CI_LOW,
    INT8_FIRST_TOKEN,
    INT8_FP32_NODES,
    INT8_RECIPE,
    INT8_SIZE_MB,
    INT8_SPEEDUP,
    INT8_TARGET_ISA,
    INT8_VALIDATED_ON,
    INT8_WORD_AGREEMENT,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    ONNX_MODEL_FILE,
    SMOKE_REPORT_FILE,
    TEST_SPLIT,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
)
from ner_lightning.errors import ExportError, ModelError, NerLightningError
from ner_lightning.onnx import gate as gate_defaults
from ner_lightning.onnx.cpu_isa import TARGET_ISAS, detect_cpu, mismatch_warning, resolve_target
from ner_lightning.onnx.first_token import FIRST_TOKEN_MODES
from ner_lightning.onnx.quantize import DEFAULT_OP_TYPES, QuantizeOptions, file_size_mb, optimize_graph
from ner_lightning.onnx.recipes import (
    DEFAULT_TARGET_DROP,
    NoRecipePassed,
    Recipe,
    format_table,
    parse_recipes,
    preset_recipes,
    search,
    static_recipe,
)

#: Files of an export folder that the conversion rewrites instead of copying.
_REWRITTEN = {ONNX_MODEL_FILE, MODEL_METADATA_FILE, SMOKE_REPORT_FILE}
#: Weight files that must never reach a model folder.
_NEVER_COPIED = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")
#: Windows per calibration batch (sensitivity ranking, static calibration, the timed batch).
_CALIBRATION_BATCH = 16


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
        "--data",
        help="dataset folder: the gate scores every test.jsonl sentence (else validation.jsonl); "
        "train.jsonl gives the calibration sentences",
    )
    parser.add_argument(
        "--checkpoint",
        help=f"checkpoint to compare against (default <input>/{CHECKPOINT_DIR}/{BEST_CHECKPOINT})",
    )
    gate = parser.add_argument_group("int8 gate (see docs/quantization.md)")
    gate.add_argument(
        "--f1-tolerance",
        type=float,
        default=gate_defaults.DEFAULT_TOLERANCE,
        help="largest int8 entity-F1 drop vs fp32 (absolute; 0.01 = 1 point); a recipe fails when the "
        "drop's bootstrap interval lies entirely above it",
    )
    gate.add_argument(
        "--confidence", type=float, default=gate_defaults.DEFAULT_CONFIDENCE, help="interval coverage"
    )
    gate.add_argument(
        "--resamples", type=int, default=gate_defaults.DEFAULT_RESAMPLES, help="bootstrap resamples"
    )
    gate.add_argument("--seed", type=int, default=gate_defaults.DEFAULT_SEED, help="bootstrap seed")
    gate.add_argument(
        "--min-entities",
        type=int,
        default=gate_defaults.DEFAULT_MIN_ENTITIES,
        help="fewest gold entities for a statistical judgement (below: judged on the point estimate, said so)",
    )
    gate.add_argument(
        "--target-drop",
        type=float,
        default=DEFAULT_TARGET_DROP,
        help="F1 drop the recipe search aims at (point estimate; 0.005 = half a point): slower fallbacks "
        "are tried until a candidate reaches it",
    )
    gate.add_argument(
        "--heldout-limit", type=int, default=0, help="score only the first N held-out sentences (0: all)"
    )
    parser.add_argument(
        "--emission-atol", type=float, default=1e-3, help="largest |PyTorch - ONNX fp32| emission difference"
    )
    parser.add_argument(
        "--sample-size", type=int, default=200, help="held-out sentences for the PyTorch vs ONNX fp32 checks"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset when exporting here")
    parser.add_argument(
        "--max-length", type=int, help="window length when exporting here (default: the training value)"
    )
    parser.add_argument(
        "--stride", type=int, help="window overlap when exporting here (default: the training value)"
    )
    quant = parser.add_argument_group("quantization recipes")
    quant.add_argument(
        "--target-isa",
        default="native",
        choices=("native", *TARGET_ISAS),
        help="CPU the model is for (default: this machine); picks the recipe preset",
    )
    quant.add_argument(
        "--recipes",
        default="",
        help="comma-separated recipes tried first (default: the target ISA's preset), e.g. dynamic-pc,static-pc",
    )
    quant.add_argument(
        "--no-fallback",
        action="store_true",
        help="do not try mixed precision and static recipes when the first recipes fail",
    )
    quant.add_argument(
        "--calibration-sentences",
        type=int,
        default=64,
        help="training sentences for node sensitivity, static calibration and timing",
    )
    custom = parser.add_argument_group(
        "custom recipe (any of these replaces the preset's first recipes with one `custom` recipe)"
    )
    custom.add_argument("--no-optimize", action="store_true", help="skip the transformer graph optimiser")
    custom.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-channel weight scales (preset: on)",
    )
    custom.add_argument("--weight-type", choices=["qint8", "quint8"], default=None)
    custom.add_argument(
        "--reduce-range",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="7-bit weights: avoids u8s8 saturation on CPUs without VNNI",
    )
    custom.add_argument("--op-types", default=None, help="comma-separated op types to quantize")
    custom.add_argument("--exclude-nodes", default=None, help="comma-separated node names kept in fp32")
    custom.add_argument("--exclude-head", action="store_true", help="keep the emission head in fp32")
    custom.add_argument(
        "--first-token",
        choices=FIRST_TOKEN_MODES,
        help="how products whose int8 step the first token sets treat its row: scaled (default), "
        "split, or shared (onnxruntime's plain quantization)",
    )
    parser.add_argument(
        "--report", help="also write the smoke report here (useful when the conversion fails)"
    )
    return parser


def custom_recipe(args: argparse.Namespace) -> Recipe | None:
    """The `custom` recipe of explicit quantization flags (None when none was given)."""
    given = (
        args.no_optimize,
        args.per_channel is not None,
        args.weight_type is not None,
        args.reduce_range is not None,
        args.op_types is not None,
        args.exclude_nodes is not None,
        args.exclude_head,
        args.first_token is not None,
    )
    if not any(given):
        return None
    defaults = QuantizeOptions()
    options = QuantizeOptions(
        optimize=not args.no_optimize,
        per_channel=defaults.per_channel if args.per_channel is None else args.per_channel,
        weight_type=args.weight_type or defaults.weight_type,
        reduce_range=defaults.reduce_range if args.reduce_range is None else args.reduce_range,
        op_types=tuple(op for op in (args.op_types or ",".join(DEFAULT_OP_TYPES)).split(",") if op),
        exclude_nodes=tuple(node for node in (args.exclude_nodes or "").split(",") if node),
        exclude_head=args.exclude_head,
        first_token=args.first_token or defaults.first_token,
    )
    return Recipe("custom", options)


def _held_out(data_dir: str | None, limit: int) -> tuple[list[tuple[list[str], list[str]]], str]:
    """Held-out `(words, tags)` pairs (test split, else validation; `limit` > 0 caps them) and the split."""
    if not data_dir:
        return [], ""
    from ner_lightning.data.records import load_dataset_folder

    dataset = load_dataset_folder(data_dir)
    split = TEST_SPLIT if dataset.splits.get(TEST_SPLIT) else VALIDATION_SPLIT
    examples = dataset.splits[split]
    if limit > 0:
        examples = examples[:limit]
    return [(list(e.tokens), list(e.tags)) for e in examples], split


def _label_warnings(data_dir: str | None, model_labels: list[str]) -> list[dict[str, Any]]:
    """The smoke report's `warnings`: the dataset's entity types differ from the model's (printed too)."""
    if not data_dir:
        return []
    from ner_lightning.data.records import load_dataset_folder
    from ner_lightning.onnx.label_sets import label_set_warning

    warning = label_set_warning(model_labels, load_dataset_folder(data_dir).labels, dataset=str(data_dir))
    if warning is None:
        return []
    print(f"ner-convert: warning: {warning['message']}", file=sys.stderr)
    return [warning]


def _calibration_sentences(data_dir: str | None, count: int) -> tuple[list[list[str]], str]:
    """`count` training sentences spread over the train split (the built-in sentences without data)."""
    if data_dir:
        from ner_lightning.data.records import load_dataset_folder

        train = [
            list(e.tokens) for e in load_dataset_folder(data_dir).splits.get(TRAIN_SPLIT, []) if e.tokens
        ]
        if train:
            step = max(1, len(train) // max(count, 1))
            return train[::step][:count], TRAIN_SPLIT
    return [words for words, _ in _fallback_sample()], "built-in sentences"


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


def _copy_serving_files(fp32_dir: Path, folder: Path) -> None:
    """Copy the export folder's files except the graph, metadata, report and any weight file."""
    for item in fp32_dir.iterdir():
        if item.is_file() and item.name not in _REWRITTEN and not item.name.endswith(_NEVER_COPIED):
            shutil.copy2(item, folder / item.name)


def _calibration_batches(tagger: Any, sentences: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """onnxruntime inputs of the sentences' windows, `_CALIBRATION_BATCH` windows a batch."""
    windows = [w for sentence in sentences for w in tagger.windows(sentence)]
    return [
        tagger.batch_inputs(windows[begin : begin + _CALIBRATION_BATCH])
        for begin in range(0, len(windows), _CALIBRATION_BATCH)
    ]


def convert(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    data_dir: str | None = None,
    checkpoint: str | Path | None = None,
    recipes: Sequence[Recipe] | None = None,
    target_isa: str | None = None,
    fallback: bool = True,
    f1_tolerance: float = gate_defaults.DEFAULT_TOLERANCE,
    confidence: float = gate_defaults.DEFAULT_CONFIDENCE,
    resamples: int = gate_defaults.DEFAULT_RESAMPLES,
    seed: int = gate_defaults.DEFAULT_SEED,
    min_entities: int = gate_defaults.DEFAULT_MIN_ENTITIES,
    target_drop: float = DEFAULT_TARGET_DROP,
    heldout_limit: int = 0,
    calibration_sentences: int = 64,
    emission_atol: float = 1e-3,
    sample_size: int = 200,
    opset: int = 17,
    max_length: int | None = None,
    stride: int | None = None,
    report_path: str | Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Convert a training output folder into a validated int8 model folder.

    Args:
        input_dir: Training output folder (`checkpoints/best.ckpt`, optionally `onnx/`).
        output_dir: Model folder to write.
        data_dir: Dataset folder: held-out sentences (test split, else validation) and calibration
            sentences (train split).
        checkpoint: Checkpoint to compare against (default `<input>/checkpoints/best.ckpt`).
        recipes: Recipes tried first (default: the target ISA's preset).
        target_isa: CPU the model is for (`TARGET_ISAS`; None/`native`: this machine).
        fallback: Try mixed precision, then static QDQ, when the first recipes fail.
        f1_tolerance: Largest accepted int8 entity-F1 drop against fp32 (see `ner_lightning.onnx.gate`).
        confidence: Coverage of the drop's bootstrap interval.
        resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        min_entities: Fewest gold entities for a statistical judgement.
        target_drop: F1 drop (point estimate) the recipe search aims at before it settles.
        heldout_limit: Score only the first N held-out sentences (0: all).
        calibration_sentences: Training sentences for sensitivity, static calibration and timing.
        emission_atol: Largest accepted PyTorch vs ONNX fp32 emission difference.
        sample_size: Held-out sentences of the PyTorch vs ONNX fp32 checks.
        opset: ONNX opset when the export happens here.
        max_length: Window length when exporting here (default: the training value).
        stride: Window overlap when exporting here (default: the training value).
        report_path: Extra place to write the smoke report (also on failure).
        announce: Progress lines (default: print to stderr).

    Returns:
        The smoke report (as written to `smoke_report.json`).

    Raises:
        ModelError: The checkpoint or the exported folder is missing or unusable.
        SmokeTestFailed: A smoke check failed or no recipe passed; nothing was written at `output_dir`.
    """
    import torch

    from ner_lightning.data.datamodule import load_tokenizer
    from ner_lightning.model.module import TokenClassifier
    from ner_lightning.onnx.export import atomic_folder, export_onnx, weights_sha256
    from ner_lightning.onnx.gate import judge
    from ner_lightning.onnx.integrity import seal
    from ner_lightning.onnx.predictor import OnnxTagger
    from ner_lightning.onnx.smoke import TorchTagger, check_int8_f1, run_smoke_test

    say = announce or (lambda line: print(line, file=sys.stderr))
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
    cpu = detect_cpu()
    target_isa = resolve_target(target_isa, cpu)
    warning = mismatch_warning(target_isa, cpu)
    if warning:
        say(f"ner-convert: warning: {warning}")
    tier1 = list(recipes) if recipes else preset_recipes(target_isa)

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

        # Candidate graphs live next to a copy of the folder's other files, so OnnxTagger serves them.
        evaluation = scratch / "candidates"
        evaluation.mkdir()
        _copy_serving_files(fp32_dir, evaluation)
        shutil.copy2(fp32_dir / MODEL_METADATA_FILE, evaluation / MODEL_METADATA_FILE)

        fused: dict[str, Any] = {}

        def graph_for(recipe: Recipe) -> Path:
            if not recipe.options.optimize:
                return fp32_dir / ONNX_MODEL_FILE
            if "path" not in fused:
                config = model.backbone.config
                fused["path"] = scratch / "optimized.onnx"
                fused["fusions"] = optimize_graph(
                    fp32_dir / ONNX_MODEL_FILE,
                    fused["path"],
                    num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                    hidden_size=int(getattr(config, "hidden_size", 0) or 0),
                )
            return fused["path"]

        held_out, split = _held_out(data_dir, heldout_limit)
        if not held_out:
            # Without a dataset, (c) scores int8 against fp32's own tags as the reference.
            words = [w for w, _ in _fallback_sample()]
            held_out = list(zip(words, fp32.tag_words(words), strict=True))
            split = "built-in sentences, fp32 tags as reference"
        words = [w for w, _ in held_out]
        gold = [t for _, t in held_out]
        fp32_tags = fp32.tag_words(words)

        def evaluate(graph: Path) -> Any:
            # One window a call, as the converted folder serves a dynamic int8 graph (predictor.batch_dependent).
            candidate = OnnxTagger(evaluation, model_file=graph.name, batch_size=1)
            return judge(
                gold,
                fp32_tags,
                candidate.tag_words(words),
                tolerance=f1_tolerance,
                confidence=confidence,
                resamples=resamples,
                seed=seed,
                min_entities=min_entities,
            )

        calibration_words, calibration_split = _calibration_sentences(data_dir, calibration_sentences)
        calibration = _calibration_batches(fp32, calibration_words)
        say(
            f"ner-convert: int8 recipe search for {target_isa} on {cpu.level} ({cpu.model}); gate on "
            f"{len(held_out)} {split} sentences, calibration on {len(calibration_words)} {calibration_split} sentences"
        )
        no_recipe: NoRecipePassed | None = None
        try:
            result = search(
                tier1,
                graph_for=graph_for,
                evaluate=evaluate,
                workdir=evaluation,
                calibration=calibration,
                fp32_graph=fp32_dir / ONNX_MODEL_FILE,
                static=static_recipe(target_isa),
                fallback=fallback,
                target_drop=target_drop,
                announce=say,
            )
            chosen, rows, ranking = result.chosen, result.rows(), result.ranking
            timings, fp32_ms = result.timings(), result.fp32_ms
            int8_check = check_int8_f1(chosen.gate)  # type: ignore[arg-type]
        except NoRecipePassed as error:
            no_recipe, rows, ranking = error, error.rows, []
            timings, fp32_ms = error.timings, error.fp32_ms
            judged = [c for c in error.candidates if c.gate is not None]
            if not judged:
                raise SmokeTestFailed(error.message, path=target, fix=error.fix) from error
            # The report still describes the most accurate candidate, marked failed with the table.
            chosen = min(judged, key=lambda c: c.gate.drop)  # type: ignore[union-attr]
            int8_check = check_int8_f1(chosen.gate, note=error.message.split(":", 1)[0])  # type: ignore[arg-type]
        recipe = chosen.recipe
        if no_recipe is None:
            say(f"ner-convert: candidates (* chosen)\n{format_table(rows, timings)}")

        quantization = {
            **recipe.to_json(),
            "fp32_nodes": list(recipe.options.exclude_nodes),
            "target_isa": target_isa,
            "target_drop": target_drop,
            "target_met": chosen.target_met,
            "validated_on": cpu.to_json(),
            "gate": chosen.gate.to_json() if chosen.gate else None,
            "candidates": rows,
            "sensitivity": ranking,
        }
        context = {
            "held_out": {
                "data": str(data_dir) if data_dir else None,
                "split": split,
                "sentences": len(held_out),
                "gold_entities": chosen.gate.gold_entities if chosen.gate else 0,
            },
            "calibration": {"split": calibration_split, "sentences": len(calibration_words)},
            "fp32_size_mb": round(file_size_mb(fp32_dir / ONNX_MODEL_FILE), 3),
            "int8_size_mb": round(file_size_mb(chosen.path), 3) if chosen.path else None,  # type: ignore[arg-type]
            "quantization": quantization,
            "cpu": cpu.to_json(),
            "cpu_warning": warning,
            "graph_fusions": fused.get("fusions", []),
            "checkpoint": str(checkpoint_path),
            # Measured on this run; the choice does not depend on them (ner_lightning.onnx.recipes).
            "speed": {"fp32_ms_per_batch": round(fp32_ms, 2), "candidates": timings},
            "warnings": _label_warnings(data_dir, label_names),
        }
        torch_tagger = TorchTagger(model, tokenizer, fp32.max_length, fp32.stride)
        sample = words[:sample_size] if data_dir else words

        if no_recipe is not None:
            int8 = OnnxTagger(evaluation, model_file=chosen.path.name, batch_size=1)  # type: ignore[union-attr]
            report = run_smoke_test(
                torch_tagger, label_names, fp32, int8, sample, int8_check, emission_atol=emission_atol
            )
            report.context.update(context)
            _finish_report(report, report_path, scratch / SMOKE_REPORT_FILE)
            raise SmokeTestFailed(
                f"smoke test failed: {', '.join(report.failed)}\n{report.summary()}\n{no_recipe.message}",
                path=target,
                fix="the model folder was not written; " + (no_recipe.fix or ""),
            )

        with atomic_folder(target) as staging:
            _copy_serving_files(fp32_dir, staging)
            shutil.copy2(chosen.path, staging / ONNX_MODEL_FILE)  # type: ignore[arg-type]
            metadata = json.loads((fp32_dir / MODEL_METADATA_FILE).read_text(encoding="utf-8"))
            metadata.update(
                precision="int8",
                quantization=quantization,
                graph_fusions=fused.get("fusions", []) if recipe.options.optimize else [],
                source_weights_sha256=weights_sha256(model),
                exported_by_conversion=exported_here,
            )
            metadata["integrity"] = seal(metadata, staging / ONNX_MODEL_FILE)
            (staging / MODEL_METADATA_FILE).write_text(
                json.dumps(metadata, indent=2) + "\n", encoding="utf-8"
            )

            int8 = OnnxTagger(staging)
            report = run_smoke_test(
                torch_tagger, label_names, fp32, int8, sample, int8_check, emission_atol=emission_atol
            )
            report.context.update(context)
            _finish_report(report, report_path, staging / SMOKE_REPORT_FILE)
            if not report.passed:
                raise SmokeTestFailed(
                    f"smoke test failed: {', '.join(report.failed)}\n{report.summary()}",
                    path=target,
                    fix="the model folder was not written; see the checks above",
                )
    return report.to_json()


def _finish_report(report: Any, extra_path: str | Path | None, path: Path) -> None:
    """Write the report (and its extra copy) and log its numbers to the job's MLflow run, if any."""
    from ner_lightning.tracking import log_to_attached_run

    if extra_path:
        report.write(extra_path)
    report.write(path)
    metrics, params = _report_metrics(report.to_json())
    log_to_attached_run(metrics, path, params=params)


def _report_metrics(report: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The numbers (metrics) and the recipe (params) of a smoke report that the job logs to its run."""
    metrics: dict[str, float] = {}
    if report.get("int8_size_mb") is not None:
        metrics[INT8_SIZE_MB] = report["int8_size_mb"]
    for check in report["checks"]:
        numbers = check["numbers"]
        if check["name"] == "int8_f1" and "fp32_f1" in numbers:
            metrics.update(
                {
                    HELDOUT_F1_FP32: numbers["fp32_f1"],
                    HELDOUT_F1_INT8: numbers["int8_f1"],
                    INT8_F1_DROP: numbers["drop"],
                    INT8_F1_DROP_CI_LOW: numbers["ci_low"],
                    INT8_F1_DROP_CI_HIGH: numbers["ci_high"],
                    HELDOUT_SENTENCES: numbers["sentences"],
                    HELDOUT_GOLD_ENTITIES: numbers["gold_entities"],
                    INT8_WORD_AGREEMENT: numbers["word_tag_agreement"],
                }
            )
    quantization = report.get("quantization") or {}
    speed = next(
        (
            timing
            for timing in (report.get("speed") or {}).get("candidates", [])
            if timing["recipe"] == quantization.get("recipe")
        ),
        None,
    )
    if speed and speed.get("speedup_vs_fp32"):
        metrics[INT8_SPEEDUP] = speed["speedup_vs_fp32"]
    params = {
        INT8_RECIPE: str(quantization.get("recipe", "")),
        INT8_FP32_NODES: ",".join(quantization.get("fp32_nodes", [])) or "none",
        INT8_FIRST_TOKEN: str(quantization.get("first_token", "shared")),
        INT8_TARGET_ISA: str(quantization.get("target_isa", "")),
        INT8_VALIDATED_ON: str((report.get("cpu") or {}).get("level", "")),
    }
    return metrics, params


@error_boundary("ner-convert")
def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `ner-convert` / `python -m ner_lightning.onnx.convert`; returns the exit code."""
    args = build_parser().parse_args(argv)
    from ner_lightning.quiet import quiet_third_party_logs

    quiet_third_party_logs()
    try:
        custom = custom_recipe(args)
        recipes = parse_recipes(args.recipes) + ([custom] if custom else [])
        report = convert(
            args.input,
            args.output,
            data_dir=args.data,
            checkpoint=args.checkpoint,
            recipes=recipes or None,
            target_isa=args.target_isa,
            fallback=not args.no_fallback,
            f1_tolerance=args.f1_tolerance,
            confidence=args.confidence,
            resamples=args.resamples,
            seed=args.seed,
            min_entities=args.min_entities,
            target_drop=args.target_drop,
            heldout_limit=args.heldout_limit,
            calibration_sentences=args.calibration_sentences,
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
    quantization = report["quantization"]
    print(
        f"ner-convert: wrote {args.output} (recipe {quantization['recipe']}, "
        f"{len(quantization['fp32_nodes'])} nodes in fp32, target {quantization['target_isa']}, "
        f"validated on {report['cpu']['level']}; int8 {report['int8_size_mb']} MB, fp32 {report['fp32_size_mb']} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
