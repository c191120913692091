"""The schedule, precision and epoch-profile benchmarks: their quick modes end to end, and their arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.epoch_profile import EPOCH, group_actions
from benchmarks.precision import split_slow_steps, summarize
from benchmarks.schedules import _write, f1_table, winner_at_every_budget
from tests.benchmarks.test_benchmarks_quick import run_quick


@pytest.mark.slow
def test_schedules_quick_scores_every_schedule(tmp_path: Path) -> None:
    payload = run_quick("benchmarks.schedules", tmp_path)
    runs = payload["tables"]["Runs"]
    assert [row["schedule"] for row in runs] == ["constant", "linear", "cosine"]
    assert all(row["epochs"] == 1 and row["steps"] > 0 and 0.0 <= row["test_f1"] <= 1.0 for row in runs)
    (row,) = payload["tables"]["Test entity F1 per schedule"]
    assert row["best"] in ("constant", "linear", "cosine")


@pytest.mark.slow
def test_precision_quick_pairs_bf16_with_fp32(tmp_path: Path) -> None:
    payload = run_quick("benchmarks.precision", tmp_path)
    summary = {row["variant"]: row for row in payload["tables"][next(iter(payload["tables"]))]}
    assert set(summary) == {"fp32", "bf16"}
    assert summary["fp32"]["median_ratio_vs_fp32"] == 1.0
    assert summary["bf16"]["median_ratio_vs_fp32"] > 0
    runs = payload["tables"]["Throughput runs (rotating order)"]
    assert all(row["steps"] == 5 and row["steady_tokens_per_second"] > 0 for row in runs)


@pytest.mark.slow
def test_epoch_profile_quick_accounts_for_the_epoch(tmp_path: Path) -> None:
    payload = run_quick("benchmarks.epoch_profile", tmp_path)
    rows = {row["part"]: row for row in payload["tables"]["Where the epoch's time goes"]}
    assert rows["epoch total (run_training_epoch)"]["seconds"] > 0
    for part in (
        "data loading + collation",
        "forward + loss (training_step)",
        "backward",
        "validation (batches, decode, metric, hooks)",
    ):
        assert rows[part]["seconds"] > 0, part
    assert rows["after the epoch: checkpoint saving (best + last)"]["calls"] == 2


def test_schedule_winner_must_win_every_budget() -> None:
    runs = [
        {"corpus": corpus, "epochs": epochs, "schedule": schedule, "test_f1": f1}
        for corpus, epochs, schedule, f1 in [
            ("a", 1, "constant", 0.5),
            ("a", 1, "linear", 0.4),
            ("a", 3, "constant", 0.6),
            ("a", 3, "linear", 0.7),
        ]
    ]
    table = f1_table(runs, ["constant", "linear"])
    assert [row["best"] for row in table] == ["constant", "linear"]
    assert winner_at_every_budget(table, ["constant", "linear"]) is None
    assert winner_at_every_budget(table[:1], ["constant", "linear"]) == "constant"


def test_slow_steps_are_told_from_steady_ones() -> None:
    # Steady: 1 ms per token; the first step compiles for 10 s more than its tokens take.
    split = split_slow_steps([10.1, 0.1, 0.2, 0.1], [100, 100, 200, 100])
    assert split["slow_steps"] == 1
    assert split["slow_seconds"] == pytest.approx(10.0)
    assert split["steady_tokens_per_second"] == pytest.approx(1000.0)


def test_a_variant_is_adopted_only_when_faster_and_within_half_a_point() -> None:
    rows = [
        {
            "repetition": 1,
            "variant": v,
            "tokens_per_second": t,
            "steady_tokens_per_second": t,
            "slow_seconds": 0.0,
        }
        for v, t in (("fp32", 100.0), ("bf16", 120.0), ("compile", 130.0))
    ]
    f1 = {"fp32": {"f1": 0.500}, "bf16": {"f1": 0.496}, "compile": {"f1": 0.490}}
    summary = {row["variant"]: row for row in summarize(rows, f1, ["fp32", "bf16", "compile"])}
    assert summary["bf16"]["median_ratio_vs_fp32"] == pytest.approx(1.2)
    assert summary["bf16"]["default?"] == "yes"
    assert summary["compile"]["default?"] == "no"  # faster, but 1 point lower


def test_epoch_parts_do_not_count_nested_actions_twice() -> None:
    durations = {
        EPOCH: (10.0, 1),
        "[_TrainingEpochLoop].train_dataloader_next": (1, 2),
        "[LightningModule]TokenClassifier.optimizer_step": (6, 2),
        "[Strategy]SingleDeviceStrategy.training_step": (2, 2),
        "[Strategy]SingleDeviceStrategy.backward": (3, 2),
        "[Callback]ProgressLog.on_before_optimizer_step": (0.2, 2),
        "[Callback]ProgressLog.on_train_batch_end": (0.4, 2),
        "[Strategy]SingleDeviceStrategy.validation_step": (1.0, 1),
        "save_checkpoint": (0.8, 2),
        "[Callback]ModelCheckpoint.on_train_epoch_end": (0.9, 1),
    }
    rows = {row["part"]: row for row in group_actions(durations, steps=2)}
    assert rows["AdamW update (optimizer_step less nested)"]["seconds"] == pytest.approx(
        6.0 - 2.0 - 3.0 - 0.2
    )
    assert rows["Lightning hooks per training batch (callbacks + module)"]["seconds"] == pytest.approx(0.6)
    inside = 1.0 + 6.0 - 0.2 + 0.6 + 1.0  # loading, optimizer_step without its hooks, hooks, validation
    assert rows["rest of the epoch (loop bookkeeping, self.log, logger writes)"]["seconds"] == pytest.approx(
        10.0 - inside
    )
    assert rows["after the epoch: checkpoint saving (best + last)"]["seconds"] == pytest.approx(0.8)
    assert rows["after the epoch: epoch-end hooks besides saving"]["seconds"] == pytest.approx(0.1)


def test_merged_results_show_every_schedule_that_ran(tmp_path: Path) -> None:
    """An invocation that runs one schedule and merges keeps the columns of the earlier ones."""
    runs = [
        {
            "corpus": "a",
            "epochs": 1,
            "schedule": schedule,
            "steps": 3,
            "test_f1": f1,
            "precision": f1,
            "recall": f1,
        }
        for schedule, f1 in (("constant", 0.5), ("linear", 0.4), ("cosine", 0.3))
    ]
    result = _write("schedules", runs, {"command": "x"}, str(tmp_path))
    assert result["table"][0]["best"] == "constant"
    header = (tmp_path / "schedules.md").read_text(encoding="utf-8").splitlines()[4]
    assert header == "| corpus | epochs | constant | linear | cosine | best |"
