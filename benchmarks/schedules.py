"""Learning-rate schedules at several budgets: test entity F1 of `constant`, `linear` and `cosine`.

Every run trains the project's model (`benchmarks.project_fit`, softmax head) with the same
settings except `model.lr_schedule` (all after the same linear warm-up of `warmup_ratio` of the
steps), for each corpus and each budget (epochs), in its own process, and is scored on the test
split with the benchmarks' one scorer. The table says which schedule wins per corpus and budget;
the project's default should be one that wins (or ties) at every budget.

    python -m benchmarks.schedules --quick true
    python -m benchmarks.schedules --corpora '[../shared/data/wnut17,<wnut16 dataset folder>]' --epochs '[1,3]'

Writes `benchmarks/results/schedules[_quick].{md,json}` after every run, so an interrupted
invocation keeps what finished; `--merge true` adds to the rows already there (same corpus,
budget and schedule: replaced), so budgets can be measured in separate invocations.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.corpus import prepare_dataset
from benchmarks.measure import machine_description
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.train_throughput import MINILM, QUICK_BACKBONE, QUICK_CORPUS, WNUT17
from benchmarks.worker import run_in_subprocess
from ner_lightning.contract import TEST_SPLIT

SCHEDULES = ("constant", "linear", "cosine")
RUN_COLUMNS = [
    "corpus",
    "epochs",
    "schedule",
    "steps",
    "test_f1",
    "precision",
    "recall",
    "train_wall_seconds",
]
#: Title of the per-run table in the JSON file (what `--merge` reads back).
RUNS_TABLE = "Runs"


def f1_table(runs: list[dict[str, Any]], schedules: list[str]) -> list[dict[str, Any]]:
    """One row per (corpus, epochs): each schedule's test F1 and the winner (highest F1)."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for run in runs:
        row = rows.setdefault(
            (run["corpus"], run["epochs"]), {"corpus": run["corpus"], "epochs": run["epochs"]}
        )
        row[run["schedule"]] = run["test_f1"]
    for row in rows.values():
        measured = [name for name in schedules if name in row]
        row["best"] = max(measured, key=lambda name: row[name]) if measured else None
    return sorted(rows.values(), key=lambda row: (row["epochs"], row["corpus"]))


def winner_at_every_budget(table: list[dict[str, Any]], schedules: list[str]) -> str | None:
    """The schedule that wins every measured (corpus, budget) row where all schedules ran, else None."""
    complete = [row for row in table if all(name in row for name in schedules)]
    winners = {row["best"] for row in complete}
    return winners.pop() if complete and len(winners) == 1 else None


def _previous(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs of an earlier result file and the commands that made them (empty when there is none)."""
    if not path.is_file():
        return [], []
    payload = json.loads(path.read_text(encoding="utf-8"))
    conditions = payload.get("conditions", {})
    commands = [*conditions.get("earlier_commands", []), conditions.get("command", "?")]
    return list(payload["tables"].get(RUNS_TABLE, [])), commands


def main(
    corpora: list[str] | None = None,
    backbone: str = MINILM,
    epochs: list[int] | None = None,
    schedules: list[str] | None = None,
    seed: int = 42,
    batch_size: int = 16,
    max_length: int = 128,
    learning_rate: float = 1e-4,
    warmup_ratio: float = 0.1,
    threads: int = 1,
    fused_adamw: bool = True,
    merge: bool = False,
    quick: bool = False,
    results_dir: str = str(RESULTS_DIR),
    timeout: float | None = 3600.0,
) -> dict[str, Any]:
    """Train one run per corpus x budget x schedule, score the test split, write the tables after each run.

    Args:
        corpora: Dataset folders (with `test.jsonl`) or folders of CoNLL files; default WNUT17.
        backbone: Pretrained backbone folder or `pkg:` reference.
        epochs: Budgets in epochs (default `[1, 3]`); the smaller budgets run first.
        schedules: Subset of `constant`, `linear`, `cosine` (default all).
        seed: Seed of every run.
        batch_size: Sentences per optimizer step.
        max_length: Subwords per window.
        learning_rate: Peak AdamW learning rate.
        warmup_ratio: Share of the steps in linear warm-up, every schedule.
        threads: torch threads per run.
        fused_adamw: The project's fused AdamW (default); false: PyTorch's per-parameter loop (what the
            first measured budgets ran with, before the epoch profile made the fused kernel the default).
        merge: Keep the rows of an earlier `schedules` result in `results_dir` (same corpus, budget and
            schedule: replaced by this run's).
        quick: Smoke check on the tiny test backbone and toy dataset (1 epoch); writes `schedules_quick`.
        results_dir: Folder for `schedules[_quick].{md,json}`.
        timeout: Seconds allowed per run.

    Returns:
        The F1 table, the per-run rows and the schedule that won every budget (None if none did).
    """
    corpora = corpora or [str(WNUT17)]
    epochs = sorted(epochs or [1, 3])
    if quick:
        corpora, backbone, epochs, batch_size, max_length = (
            [str(QUICK_CORPUS)],
            str(QUICK_BACKBONE),
            [1],
            4,
            64,
        )
    chosen = schedules or list(SCHEDULES)
    unknown = sorted(set(chosen) - set(SCHEDULES))
    if unknown:
        raise SystemExit(f"unknown schedules {unknown}; choose from {list(SCHEDULES)}")
    name = "schedules_quick" if quick else "schedules"
    runs, earlier = _previous(Path(results_dir) / f"{name}.json") if merge else ([], [])
    conditions = {
        "command": "python -m benchmarks.schedules " + shlex.join(sys.argv[1:]),
        **({"earlier_commands": earlier} if earlier else {}),
        "corpora": corpora,
        "backbone": backbone,
        "head": "softmax",
        "seed": seed,
        "batch_size": batch_size,
        "max_length": max_length,
        "learning_rate": learning_rate,
        "warmup_ratio": warmup_ratio,
        "threads": threads,
        "fused_adamw": fused_adamw,
        "scorer": "seqeval default (conlleval-compatible), entity micro F1 on the full test sentences",
        **machine_description(),
    }
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ner-bench-data-") as scratch:
        folders = {
            Path(corpus).name: prepare_dataset(corpus, Path(scratch) / str(i))
            for i, corpus in enumerate(corpora)
        }
        for budget in epochs:
            for corpus_name, data_dir in folders.items():
                for schedule in chosen:
                    print(
                        f"[schedules] {corpus_name}, {budget} epoch(s): {schedule}",
                        file=sys.stderr,
                        flush=True,
                    )
                    settings = {
                        "backbone": backbone,
                        "batch_size": batch_size,
                        "max_length": max_length,
                        "learning_rate": learning_rate,
                        "warmup_ratio": warmup_ratio,
                        "epochs": budget,
                        "seed": seed,
                        "threads": threads,
                    }
                    kwargs = {
                        "data_dir": str(data_dir),
                        "settings": settings,
                        "evaluate": [TEST_SPLIT],
                        "lr_schedule": schedule,
                        "fused_adamw": fused_adamw,
                    }
                    report = run_in_subprocess("benchmarks.project_fit:run", kwargs, timeout)
                    test = report[TEST_SPLIT]
                    key = (corpus_name, budget, schedule)
                    runs = [run for run in runs if (run["corpus"], run["epochs"], run["schedule"]) != key]
                    runs.append(
                        {
                            "corpus": corpus_name,
                            "epochs": budget,
                            "schedule": schedule,
                            "steps": report["steps"],
                            "test_f1": test["f1"],
                            "precision": test["precision"],
                            "recall": test["recall"],
                            "per_type": test["per_type"],
                            "train_wall_seconds": report["train_wall_seconds"],
                            "peak_rss_mib": report["peak_rss_mib"],
                        }
                    )
                    result = _write(name, runs, conditions, results_dir)
    print((Path(results_dir) / f"{name}.md").read_text(encoding="utf-8"))
    return result


def _write(
    name: str, runs: list[dict[str, Any]], conditions: dict[str, Any], results_dir: str
) -> dict[str, Any]:
    """Write the tables of every run so far (merged runs included), columns for every schedule that ran."""
    schedules = [schedule for schedule in SCHEDULES if any(run["schedule"] == schedule for run in runs)]
    table = f1_table(runs, schedules)
    winner = winner_at_every_budget(table, schedules)
    notes = [
        f"{row['corpus']}, {row['epochs']} epoch(s): best {row['best']}"
        + "".join(
            f"; {s} {100 * (row[s] - row[row['best']]):+.1f}"
            for s in schedules
            if s in row and s != row["best"]
        )
        + " F1 points"
        for row in table
    ]
    notes.append(
        f"wins at every measured budget: {winner}" if winner else "no schedule wins at every measured budget"
    )
    tables = {
        "Test entity F1 per schedule": (table, ["corpus", "epochs", *schedules, "best"]),
        RUNS_TABLE: (runs, RUN_COLUMNS),
    }
    write_results(
        name, "Learning-rate schedules: test entity F1 per budget", tables, conditions, results_dir, notes
    )
    return {"table": table, "runs": runs, "winner": winner}


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
