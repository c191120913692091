"""Deterministic best-configuration selection from a sweep's trials (P1-3.6).

Criteria (logged verbatim with every selection):
  1. only trials with status Completed that logged the primary metric take part;
  2. the best primary metric wins (`val_f1`, higher is better);
  3. ties are broken by the canonical JSON of the trial's hyperparameters (sorted keys,
     ascending string order), then by trial id, so the same trials in any order give the same
     choice.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from launch.errors import LaunchError
from launch.files import write_json_atomic
from launch.job_specs import MODEL_OUTPUT
from launch.jobs import TrialResult, job_output_uri
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    PRIMARY_METRIC,
    PRIMARY_METRIC_GOAL,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_GIT_COMMIT,
)

CRITERIA = (
    "completed trials that logged {metric} only; highest {metric} wins ({goal}); ties broken by the "
    "canonical JSON of the hyperparameters (sorted keys, ascending), then by trial id"
)
SELECTION_FILE = "selection.json"
RANKED_FILE = "ranked_trials.csv"
#: Search-space names that carry the backbone (the training CLI's `--model.backbone`).
BACKBONE_KEYS = ("backbone", "model.backbone", "model_backbone")


def canonical_params(params: Mapping[str, object]) -> str:
    """Canonical JSON of hyperparameters: sorted keys, no spaces, floats by repr."""
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class RankedTrial:
    """One row of the ranked table (failed and pruned trials rank last, unranked)."""

    rank: int | None
    trial_id: str
    run_id: str
    status: str
    metric: float | None
    params: str
    error: str


@dataclass(frozen=True)
class Selection:
    """The chosen configuration and everything final training needs to know about it."""

    trial_id: str
    run_id: str
    metric: str
    value: float
    params: Mapping[str, object]
    backbone: str
    dataset_name: str
    dataset_version: str
    git_commit: str
    sweep_id: str
    criteria: str
    ranked: tuple[RankedTrial, ...]
    #: The selected trial's best checkpoint (a job-output reference): `hpo_best` final training starts from it.
    checkpoint: str = ""

    def to_json(self) -> dict:
        """Plain-JSON form (what `selection.json` holds)."""
        payload = asdict(self)
        payload["params"] = dict(self.params)
        return payload


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _sort_key(trial: TrialResult, metric: str, sign: float) -> tuple:
    return (-sign * trial.metrics[metric], canonical_params(trial.params), trial.trial_id)


def select_best(
    trials: Iterable[TrialResult],
    *,
    context_tags: Mapping[str, str],
    sweep_id: str,
    default_backbone: str = "",
    metric: str = PRIMARY_METRIC,
    goal: str = PRIMARY_METRIC_GOAL,
) -> Selection:
    """Pick the best trial deterministically and rank all of them.

    Args:
        trials: Every trial of the sweep, in any order.
        context_tags: Tags of the sweep's trial job (dataset name/version, git commit).
        sweep_id: Run id of the sweep's parent run.
        default_backbone: Backbone of the base training config, used when it was not searched.
        metric: Primary metric.
        goal: `maximize` or `minimize`.

    Raises:
        LaunchError: No trial completed; the message lists every trial's error.
    """
    trials = list(trials)
    sign = 1.0 if goal.lower().startswith("max") else -1.0
    eligible = [
        t
        for t in trials
        if t.status == "Completed" and metric in t.metrics and not math.isnan(float(t.metrics[metric]))
    ]
    if not eligible:
        details = "\n".join(
            f"  - {t.trial_id} ({t.status}): {_last_line(t.error) or 'no ' + metric + ' logged'}"
            for t in sorted(trials, key=lambda t: t.trial_id)
        )
        raise LaunchError(
            f"no sweep trial completed with `{metric}` ({len(trials)} trials); nothing to select:\n{details or '  (no trials)'}",
            field="sweep",
            fix="read each trial's log (listed above and in the sweep run), fix the cause and rerun with --force sweep",
        )
    ranked_ok = sorted(eligible, key=lambda t: _sort_key(t, metric, sign))
    others = sorted((t for t in trials if t not in eligible), key=lambda t: t.trial_id)
    ranked = tuple(
        RankedTrial(
            i + 1, t.trial_id, t.run_id, t.status, float(t.metrics[metric]), canonical_params(t.params), ""
        )
        for i, t in enumerate(ranked_ok)
    ) + tuple(
        RankedTrial(
            None,
            t.trial_id,
            t.run_id,
            t.status,
            t.metrics.get(metric),
            canonical_params(t.params),
            t.error[-300:],
        )
        for t in others
    )
    best = ranked_ok[0]
    backbone = next((str(best.params[k]) for k in BACKBONE_KEYS if k in best.params), default_backbone)
    return Selection(
        trial_id=best.trial_id,
        run_id=best.run_id,
        metric=metric,
        value=float(best.metrics[metric]),
        params=dict(best.params),
        backbone=backbone,
        dataset_name=context_tags.get(TAG_DATASET_NAME, ""),
        dataset_version=context_tags.get(TAG_DATASET_VERSION, ""),
        git_commit=context_tags.get(TAG_GIT_COMMIT, ""),
        sweep_id=sweep_id,
        criteria=CRITERIA.format(metric=metric, goal=goal),
        ranked=ranked,
        checkpoint=job_output_uri(best.trial_id, MODEL_OUTPUT, f"{CHECKPOINT_DIR}/{BEST_CHECKPOINT}"),
    )


def ranked_table_csv(selection: Selection) -> str:
    """The ranked table as CSV text (rank, trial, run, status, metric, params, error)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "trial_id", "run_id", "status", selection.metric, "params", "error"])
    for row in selection.ranked:
        writer.writerow(
            [row.rank or "", row.trial_id, row.run_id, row.status, row.metric, row.params, row.error]
        )
    return buffer.getvalue()


def write_selection(selection: Selection, folder: str | Path) -> Path:
    """Write `selection.json` (criteria, choice, ranked table) and `ranked_trials.csv` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / SELECTION_FILE, selection.to_json())
    tmp = folder / f".{RANKED_FILE}.tmp"
    tmp.write_text(ranked_table_csv(selection), encoding="utf-8")
    tmp.replace(folder / RANKED_FILE)
    return folder
