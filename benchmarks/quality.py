"""Test-set quality on a real corpus: the project's model with and without CRF, against the baseline.

For each seed, three runs train for the same number of epochs with the same settings, each in its
own process: the plain Hugging Face baseline, the project without CRF and the project with CRF.
Every run is scored on the test split with one scorer (`benchmarks.scoring`, seqeval
conlleval-compatible, full gold sentences). Reported: test entity F1 mean ± std over the seeds,
precision, recall, F1 per entity type, and training wall time.

    python -m benchmarks.quality --quick true
    python -m benchmarks.quality --seeds 3 --epochs 3          # MiniLM on ../shared/data/wnut17

Writes `benchmarks/results/quality[_quick].{md,json}`.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from typing import Any

from benchmarks.corpus import prepare_dataset
from benchmarks.measure import machine_description, mean_std
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.train_throughput import MINILM, QUICK_BACKBONE, QUICK_CORPUS, WNUT17
from benchmarks.worker import run_in_subprocess
from ner_lightning.contract import TEST_SPLIT

#: Variant name -> (worker target, extra keyword arguments).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hf_baseline": ("benchmarks.hf_baseline:run", {}),
    "project": ("benchmarks.project_fit:run", {"use_crf": False}),
    "project_crf": ("benchmarks.project_fit:run", {"use_crf": True}),
}
SUMMARY_COLUMNS = [
    "variant",
    "seeds",
    "test_f1_mean",
    "test_f1_std",
    "precision_mean",
    "recall_mean",
    "train_wall_seconds_mean",
    "peak_rss_mib",
]
RUN_COLUMNS = ["variant", "seed", "test_f1", "precision", "recall", "train_wall_seconds"]


def summarize(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per-variant mean ± std over seeds, and the mean F1 per entity type and variant."""
    summary, types = [], {}
    for variant in VARIANTS:
        mine = [run for run in runs if run["variant"] == variant]
        if not mine:
            continue
        f1_mean, f1_std = mean_std([run["test_f1"] for run in mine])
        summary.append(
            {
                "variant": variant,
                "seeds": len(mine),
                "test_f1_mean": f1_mean,
                "test_f1_std": f1_std,
                "precision_mean": mean_std([run["precision"] for run in mine])[0],
                "recall_mean": mean_std([run["recall"] for run in mine])[0],
                "train_wall_seconds_mean": mean_std([run["train_wall_seconds"] for run in mine])[0],
                "peak_rss_mib": max(run["peak_rss_mib"] for run in mine),
            }
        )
        for entity_type in sorted({t for run in mine for t in run["per_type"]}):
            row = types.setdefault(entity_type, {"type": entity_type})
            scores = [run["per_type"][entity_type] for run in mine if entity_type in run["per_type"]]
            row[f"{variant}_f1"] = mean_std([score["f1"] for score in scores])[0]
            row["support"] = scores[0]["support"]
    return summary, list(types.values())


def main(
    corpus: str = str(WNUT17),
    backbone: str = MINILM,
    seeds: int = 3,
    first_seed: int = 42,
    epochs: int = 3,
    batch_size: int = 16,
    max_length: int = 128,
    learning_rate: float = 1e-4,
    threads: int = 1,
    variants: list[str] | None = None,
    quick: bool = False,
    results_dir: str = str(RESULTS_DIR),
    timeout: float | None = 3600.0,
) -> dict[str, Any]:
    """Train every variant for `epochs` epochs over `seeds` seeds, score the test split, write the tables.

    Args:
        corpus: Dataset folder (with `test.jsonl`), or a folder of CoNLL files (converted to a scratch folder).
        backbone: Pretrained backbone folder or `pkg:` reference.
        seeds: Number of seeds (0, 1, ... added to `first_seed`).
        first_seed: The first seed (runs of several invocations can be combined by seed).
        epochs: Training epochs of every run.
        batch_size: Sentences per optimizer step.
        max_length: Subwords per sequence (baseline: truncation; project: window size).
        learning_rate: Peak AdamW learning rate (CRF scores use the project's `crf_learning_rate`).
        threads: torch threads per run.
        variants: Subset of `hf_baseline`, `project`, `project_crf` (default all).
        quick: Smoke check on the tiny test backbone and toy dataset (2 seeds, 1 epoch); writes `quality_quick`.
        results_dir: Folder for `quality[_quick].{md,json}`.
        timeout: Seconds allowed per run.

    Returns:
        The summary, per-type and per-run tables.
    """
    if quick:
        corpus, backbone, seeds, epochs, batch_size, max_length = (
            str(QUICK_CORPUS),
            str(QUICK_BACKBONE),
            2,
            1,
            4,
            64,
        )
    chosen = variants or list(VARIANTS)
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="ner-bench-data-") as scratch:
        data_dir = prepare_dataset(corpus, scratch)
        for offset in range(seeds):
            seed = first_seed + offset
            settings = {
                "backbone": backbone,
                "batch_size": batch_size,
                "max_length": max_length,
                "learning_rate": learning_rate,
                "epochs": epochs,
                "seed": seed,
                "threads": threads,
            }
            for variant in chosen:
                target, extra = VARIANTS[variant]
                print(f"[quality] seed {seed}: {variant}", file=sys.stderr, flush=True)
                kwargs = {"data_dir": str(data_dir), "settings": settings, "evaluate": [TEST_SPLIT], **extra}
                report = run_in_subprocess(target, kwargs, timeout)
                test = report[TEST_SPLIT]
                runs.append(
                    {
                        "variant": variant,
                        "seed": seed,
                        "test_f1": test["f1"],
                        "precision": test["precision"],
                        "recall": test["recall"],
                        "per_type": test["per_type"],
                        "train_wall_seconds": report["train_wall_seconds"],
                        "peak_rss_mib": report["peak_rss_mib"],
                    }
                )
    summary, per_type = summarize(runs)
    type_columns = ["type", "support", *[f"{variant}_f1" for variant in chosen]]
    notes = []
    by_variant = {row["variant"]: row for row in summary}
    if "project" in by_variant and "project_crf" in by_variant:
        delta = 100 * (by_variant["project_crf"]["test_f1_mean"] - by_variant["project"]["test_f1_mean"])
        notes.append(f"CRF vs no CRF: {delta:+.1f} F1 points (mean over {seeds} seed(s))")
    if "project" in by_variant and "hf_baseline" in by_variant:
        delta = 100 * (by_variant["project"]["test_f1_mean"] - by_variant["hf_baseline"]["test_f1_mean"])
        notes.append(f"project (no CRF) vs plain baseline, same epochs: {delta:+.1f} F1 points")
    conditions = {
        "command": "python -m benchmarks.quality " + shlex.join(sys.argv[1:]),
        "corpus": corpus,
        "backbone": backbone,
        "seeds": seeds,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_length": max_length,
        "learning_rate": learning_rate,
        "threads": threads,
        "scorer": "seqeval default (conlleval-compatible), entity micro F1 on the full test sentences",
        **machine_description(),
    }
    tables = {
        "Test entity F1": (summary, SUMMARY_COLUMNS),
        "Test F1 per entity type (mean over seeds)": (per_type, type_columns),
        "Runs": (runs, RUN_COLUMNS),
    }
    name = "quality_quick" if quick else "quality"
    md_path, _ = write_results(
        name, "Quality: test entity F1 on a real corpus", tables, conditions, results_dir, notes
    )
    print(md_path.read_text(encoding="utf-8"))
    return {"summary": summary, "per_type": per_type, "runs": runs}


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
