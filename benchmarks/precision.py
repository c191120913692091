"""bf16 autocast and `torch.compile` against fp32: training throughput and F1, measured in one run.

Variants of the project's fit (`benchmarks.project_fit`), all else equal:

- `fp32`: the default (`trainer.precision: 32-true`, fused AdamW);
- `fp32_loop_adamw`: fp32 with PyTorch's per-parameter AdamW loop (the default before the epoch
  profile; not run unless asked);
- `bf16`: `trainer.precision: bf16-mixed` (bf16 autocast of the forward pass, fp32 weights);
- `compile`: the encoder wrapped in `torch.compile` (inductor), fp32;
- `compile_bf16`: both (not run unless asked).

Throughput: each variant trains `steps` optimizer steps, each run in its own process, the order
rotating over the repetitions so drifting machine load hits every variant; reported per
repetition as the ratio of tokens/s to the fp32 run of the same repetition (median over
repetitions). A step that compiles is much slower than the steady ones: steps slower than
`SLOW_STEP_FACTOR` times the run's median seconds per token count as slow steps, and their
time above the steady rate is reported apart (`slow_seconds`: compilation for the compiled
variants; the first step's allocations and warm-up for every variant); `steady_tokens_per_second`
leaves them out, `tokens_per_second` keeps them (what a run of that length gets).
F1: each variant trains `f1_epochs` epochs on `f1_corpus` and is scored on its test split.

    python -m benchmarks.precision --quick true
    python -m benchmarks.precision --steps 40 --repetitions 2 --f1_corpus <dataset folder> --f1_epochs 1

Writes `benchmarks/results/precision[_quick].{md,json}`.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.corpus import prepare_dataset
from benchmarks.measure import machine_description, median
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.train_throughput import MINILM, QUICK_BACKBONE, QUICK_CORPUS, WNUT17
from benchmarks.worker import WorkerError, run_in_subprocess
from ner_lightning.contract import TEST_SPLIT

#: Variant name -> keyword arguments of `benchmarks.project_fit.run`.
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {"precision": "32-true"},
    "fp32_loop_adamw": {"precision": "32-true", "fused_adamw": False},
    "bf16": {"precision": "bf16-mixed"},
    "compile": {"compile_backbone": True},
    "compile_bf16": {"precision": "bf16-mixed", "compile_backbone": True},
}
BASELINE = "fp32"
#: A step this many times slower per token than the run's median counts as a slow (compile or warm-up) step.
SLOW_STEP_FACTOR = 3.0
#: Largest F1 loss (points) a variant may have to become a default.
F1_TOLERANCE_POINTS = 0.5
RUN_COLUMNS = [
    "repetition",
    "variant",
    "steps",
    "real_tokens",
    "tokens_per_second",
    "steady_tokens_per_second",
    "slow_steps",
    "slow_seconds",
    "peak_rss_mib",
    "error",
]
SUMMARY_COLUMNS = [
    "variant",
    "median_ratio_vs_fp32",
    "median_steady_ratio_vs_fp32",
    "median_tokens_per_second",
    "median_slow_seconds",
    "test_f1",
    "f1_delta_points",
    "default?",
]


def split_slow_steps(step_seconds: list[float], step_tokens: list[int]) -> dict[str, Any]:
    """Tell slow steps (compilation, warm-up) from steady ones by their seconds per token.

    Args:
        step_seconds: Each training step's time (forward, backward, optimizer).
        step_tokens: Each step's real tokens.

    Returns:
        `slow_steps` (how many), `slow_seconds` (their time above the steady rate) and
        `steady_tokens_per_second` (tokens / time of the other steps).
    """
    per_token = [seconds / max(tokens, 1) for seconds, tokens in zip(step_seconds, step_tokens, strict=True)]
    if not per_token:
        return {"slow_steps": 0, "slow_seconds": 0.0, "steady_tokens_per_second": 0.0}
    typical = median(per_token)
    slow = [i for i, rate in enumerate(per_token) if rate > SLOW_STEP_FACTOR * typical]
    steady = [i for i in range(len(per_token)) if i not in set(slow)]
    steady_seconds = sum(step_seconds[i] for i in steady)
    return {
        "slow_steps": len(slow),
        "slow_seconds": sum(step_seconds[i] - step_tokens[i] * typical for i in slow),
        "steady_tokens_per_second": sum(step_tokens[i] for i in steady) / steady_seconds
        if steady_seconds
        else 0.0,
    }


def measure_throughput(
    data_dir: Path, settings: dict[str, Any], variants: list[str], repetitions: int, timeout: float | None
) -> list[dict[str, Any]]:
    """Train every variant `settings["max_steps"]` steps per repetition, rotating the order; one row per run.

    A variant that fails (e.g. `torch.compile` without a working compiler) gets a row with its error.
    """
    rows = []
    for repetition in range(repetitions):
        shift = repetition % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            print(
                f"[precision] repetition {repetition + 1}/{repetitions}: {variant}",
                file=sys.stderr,
                flush=True,
            )
            kwargs = {"data_dir": str(data_dir), "settings": settings, "evaluate": [], **VARIANTS[variant]}
            try:
                report = run_in_subprocess("benchmarks.project_fit:run", kwargs, timeout)
            except WorkerError as error:
                rows.append({"repetition": repetition + 1, "variant": variant, "error": str(error)[-300:]})
                continue
            rows.append(
                {
                    "repetition": repetition + 1,
                    "variant": variant,
                    "steps": report["steps"],
                    "real_tokens": report["real_tokens"],
                    "tokens_per_second": report["tokens_per_second"],
                    "peak_rss_mib": report["peak_rss_mib"],
                    "step_seconds": report["step_seconds"],
                    **split_slow_steps(report["step_seconds"], report["step_tokens"]),
                }
            )
    return rows


def measure_f1(
    data_dir: Path, settings: dict[str, Any], variants: list[str], epochs: int, timeout: float | None
) -> dict[str, dict[str, Any]]:
    """Train every variant `epochs` epochs and score the test split; variant -> scores (or error)."""
    scores = {}
    for variant in variants:
        print(f"[precision] test F1 after {epochs} epoch(s): {variant}", file=sys.stderr, flush=True)
        run_settings = {**settings, "max_steps": None, "epochs": epochs}
        kwargs = {
            "data_dir": str(data_dir),
            "settings": run_settings,
            "evaluate": [TEST_SPLIT],
            **VARIANTS[variant],
        }
        try:
            report = run_in_subprocess("benchmarks.project_fit:run", kwargs, timeout)
        except WorkerError as error:
            scores[variant] = {"error": str(error)[-300:]}
            continue
        scores[variant] = {**report[TEST_SPLIT], "train_wall_seconds": report["train_wall_seconds"]}
    return scores


def summarize(
    rows: list[dict[str, Any]], f1: dict[str, dict[str, Any]], variants: list[str]
) -> list[dict[str, Any]]:
    """Per variant: median paired ratios to fp32 (whole run and steady steps), F1 and its delta, adoption."""
    by_repetition: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            by_repetition.setdefault(row["repetition"], {})[row["variant"]] = row
    base_f1 = f1.get(BASELINE, {}).get("f1")
    summary = []
    for variant in variants:
        pairs = [runs for runs in by_repetition.values() if variant in runs and BASELINE in runs]
        mine = [row for row in rows if row["variant"] == variant and "error" not in row]
        ratio = (
            median([p[variant]["tokens_per_second"] / p[BASELINE]["tokens_per_second"] for p in pairs])
            if pairs
            else None
        )
        steady = (
            median(
                [
                    p[variant]["steady_tokens_per_second"] / p[BASELINE]["steady_tokens_per_second"]
                    for p in pairs
                ]
            )
            if pairs
            else None
        )
        test_f1 = f1.get(variant, {}).get("f1")
        delta = 100 * (test_f1 - base_f1) if test_f1 is not None and base_f1 is not None else None
        adopt = variant == BASELINE or (
            ratio is not None and ratio > 1.0 and delta is not None and delta >= -F1_TOLERANCE_POINTS
        )
        summary.append(
            {
                "variant": variant,
                "median_ratio_vs_fp32": ratio,
                "median_steady_ratio_vs_fp32": steady,
                "median_tokens_per_second": median([row["tokens_per_second"] for row in mine])
                if mine
                else None,
                "median_slow_seconds": median([row["slow_seconds"] for row in mine]) if mine else None,
                "test_f1": test_f1,
                "f1_delta_points": delta,
                "default?": "yes" if adopt else "no",
            }
        )
    return summary


def main(
    corpus: str = str(WNUT17),
    f1_corpus: str | None = None,
    backbone: str = MINILM,
    variants: list[str] | None = None,
    batch_size: int = 32,
    max_length: int = 128,
    steps: int = 40,
    repetitions: int = 2,
    f1_epochs: int = 1,
    f1_skip_slower: bool = False,
    f1_batch_size: int = 16,
    learning_rate: float = 1e-4,
    threads: int = 1,
    seed: int = 42,
    quick: bool = False,
    results_dir: str = str(RESULTS_DIR),
    timeout: float | None = 1800.0,
) -> dict[str, Any]:
    """Measure bf16 autocast and torch.compile against fp32 (throughput and F1); write the tables.

    Args:
        corpus: Dataset folder or CoNLL folder of the throughput runs (its train split).
        f1_corpus: Dataset folder or CoNLL folder of the F1 runs (default: `corpus`).
        backbone: Pretrained backbone folder or `pkg:` reference.
        variants: Subset of `fp32`, `fp32_loop_adamw`, `bf16`, `compile`, `compile_bf16` (default fp32, bf16,
            compile; fp32 always runs).
        batch_size: Sentences per optimizer step in the throughput runs.
        max_length: Subwords per window.
        steps: Optimizer steps per throughput run.
        repetitions: Throughput runs per variant, the order rotating.
        f1_epochs: Epochs of the F1 runs (0: skip them).
        f1_skip_slower: No F1 run for a variant slower than fp32 in the throughput runs (it cannot
            become a default); its row says so.
        f1_batch_size: Sentences per optimizer step in the F1 runs.
        learning_rate: Peak AdamW learning rate.
        threads: torch threads per run.
        seed: Seed of every run.
        quick: Smoke check on the tiny backbone and toy dataset (fp32 and bf16, 5 steps); writes `precision_quick`.
        results_dir: Folder for `precision[_quick].{md,json}`.
        timeout: Seconds allowed per run.

    Returns:
        The summary and per-run rows.
    """
    chosen = variants or ["fp32", "bf16", "compile"]
    if quick:
        corpus, f1_corpus, backbone = str(QUICK_CORPUS), None, str(QUICK_BACKBONE)
        chosen = variants or ["fp32", "bf16"]
        batch_size, f1_batch_size, max_length, steps, repetitions, f1_epochs = 4, 4, 64, 5, 1, 1
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    chosen = [BASELINE, *[variant for variant in chosen if variant != BASELINE]]
    settings = {
        "backbone": backbone,
        "batch_size": batch_size,
        "max_length": max_length,
        "learning_rate": learning_rate,
        "max_steps": steps,
        "seed": seed,
        "threads": threads,
    }
    with tempfile.TemporaryDirectory(prefix="ner-bench-data-") as scratch:
        data_dir = prepare_dataset(corpus, Path(scratch) / "throughput")
        rows = measure_throughput(data_dir, settings, chosen, repetitions, timeout)
        f1: dict[str, dict[str, Any]] = {}
        if f1_epochs > 0:
            f1_dir = prepare_dataset(f1_corpus or corpus, Path(scratch) / "f1")
            candidates = chosen
            if f1_skip_slower:
                ratios = {row["variant"]: row["median_ratio_vs_fp32"] for row in summarize(rows, {}, chosen)}
                candidates = [
                    v for v in chosen if v == BASELINE or (ratios[v] is not None and ratios[v] > 1.0)
                ]
            f1_settings = {**settings, "batch_size": f1_batch_size}
            f1 = measure_f1(f1_dir, f1_settings, candidates, f1_epochs, timeout)
            for variant in chosen:
                f1.setdefault(variant, {"error": "not run: slower than fp32 (cannot become a default)"})
    summary = summarize(rows, f1, chosen)
    f1_rows = [{"variant": variant, **scores} for variant, scores in f1.items()]
    tables = {
        "Summary (ratios paired with the fp32 run of the same repetition)": (summary, SUMMARY_COLUMNS),
        "Throughput runs (rotating order)": (rows, RUN_COLUMNS),
        f"Test entity F1 after {f1_epochs} epoch(s)": (
            f1_rows,
            ["variant", "f1", "precision", "recall", "train_wall_seconds", "error"],
        ),
    }
    notes = [
        f"default only if faster than fp32 (median ratio > 1) and test F1 within {F1_TOLERANCE_POINTS} point",
        f"slow steps (compilation, first-step warm-up): slower than {SLOW_STEP_FACTOR:g}x the run's median seconds per token",
    ]
    conditions = {
        "command": "python -m benchmarks.precision " + shlex.join(sys.argv[1:]),
        "corpus": corpus,
        "f1_corpus": f1_corpus or corpus,
        **settings,
        "f1_batch_size": f1_batch_size,
        "f1_epochs": f1_epochs,
        "repetitions": repetitions,
        **machine_description(),
    }
    name = "precision_quick" if quick else "precision"
    md_path, _ = write_results(
        name,
        "bf16 autocast and torch.compile vs fp32: throughput and F1",
        tables,
        conditions,
        results_dir,
        notes,
    )
    print(md_path.read_text(encoding="utf-8"))
    return {"summary": summary, "runs": rows, "f1": f1}


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
