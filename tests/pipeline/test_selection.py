"""Selection is deterministic (property test), ranks every trial and refuses a sweep with no success."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launch.errors import LaunchError
from launch.jobs import TrialResult
from launch.selection import RANKED_FILE, SELECTION_FILE, select_best, write_selection

TAGS = {"dataset_name": "toy", "dataset_version": "3", "git_commit": "abc123"}


def _trial(i: int, f1: float | None, status: str = "Completed", **params) -> TrialResult:
    return TrialResult(
        trial_id=f"trial-{i:02d}",
        run_id=f"run{i}",
        status=status,
        params=params or {"lr": 0.001 * (i + 1)},
        metrics={} if f1 is None else {"val_f1": f1},
        error="" if status == "Completed" else f"Traceback...\nValueError: trial {i} broke",
    )


trials_strategy = st.lists(
    st.builds(
        _trial,
        st.integers(0, 30),
        st.sampled_from([0.1, 0.5, 0.5, 0.9, None]),
        st.sampled_from(["Completed", "Completed", "Failed", "Canceled"]),
        lr=st.sampled_from([1e-5, 3e-5, 1e-4]),
        backbone=st.sampled_from(["a", "b"]),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda t: t.trial_id,
)


@settings(max_examples=200, deadline=None)
@given(trials=trials_strategy, order=st.randoms(use_true_random=False))
def test_same_trials_in_any_order_give_the_same_choice(trials: list[TrialResult], order) -> None:
    shuffled = list(trials)
    order.shuffle(shuffled)
    try:
        first = select_best(trials, context_tags=TAGS, sweep_id="s")
    except LaunchError:
        with pytest.raises(LaunchError):
            select_best(shuffled, context_tags=TAGS, sweep_id="s")
        return
    second = select_best(shuffled, context_tags=TAGS, sweep_id="s")
    assert first == second
    completed = [t.metrics["val_f1"] for t in trials if t.status == "Completed" and "val_f1" in t.metrics]
    assert first.value == max(completed)


def test_tie_is_broken_by_canonical_params_and_everything_is_extracted(tmp_path: Path) -> None:
    trials = [
        _trial(1, 0.8, lr=3e-5, backbone="b"),
        _trial(2, 0.8, lr=1e-5, backbone="a"),
        _trial(3, 0.9, "Failed"),
        _trial(4, 0.3, lr=1e-4, backbone="a"),
    ]
    selection = select_best(trials, context_tags=TAGS, sweep_id="sweep-run")
    assert selection.trial_id == "trial-02"  # {"backbone":"a",...} sorts before {"backbone":"b",...}
    assert (selection.backbone, selection.dataset_name, selection.dataset_version, selection.git_commit) == (
        "a",
        "toy",
        "3",
        "abc123",
    )
    assert [r.trial_id for r in selection.ranked] == ["trial-02", "trial-01", "trial-04", "trial-03"]
    assert selection.ranked[-1].rank is None and "broke" in selection.ranked[-1].error
    write_selection(selection, tmp_path)
    saved = json.loads((tmp_path / SELECTION_FILE).read_text())
    assert saved["criteria"].startswith("completed trials") and saved["params"] == {
        "lr": 1e-5,
        "backbone": "a",
    }
    rows = (tmp_path / RANKED_FILE).read_text().splitlines()
    assert rows[0].startswith("rank,trial_id") and rows[1].startswith("1,trial-02")


def test_every_trial_failed_stops_and_shows_each_error() -> None:
    trials = [_trial(1, None, "Failed"), _trial(2, None, "Failed")]
    with pytest.raises(LaunchError) as info:
        select_best(trials, context_tags=TAGS, sweep_id="s")
    text = str(info.value)
    assert "trial-01 (Failed): ValueError: trial 1 broke" in text
    assert "trial-02 (Failed): ValueError: trial 2 broke" in text
