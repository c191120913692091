"""Entity-level scores computed the same way for every side of a benchmark.

Both the plain baseline and this project's model are scored here from word-level tag sequences
against the FULL gold sentences (words a model never saw, e.g. cut off by truncation, count as
predicted `O`), with seqeval's default conlleval-compatible mode, which is what the Hugging Face
example and the published WNUT17 numbers use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ner_lightning.contract import OUTSIDE_TAG


def pad_predictions(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> list[list[str]]:
    """Extend each predicted sentence with `O` up to its gold length (truncated words were never tagged)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones")
    padded = []
    for gold_tags, tags in zip(gold, predicted, strict=True):
        tags = list(tags)[: len(gold_tags)]
        padded.append(tags + [OUTSIDE_TAG] * (len(gold_tags) - len(tags)))
    return padded


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity precision, recall, F1 (micro) and F1 per entity type.

    Args:
        gold: Gold IOB2 tags, one list per sentence.
        predicted: Predicted IOB2 tags, one list per sentence (shorter lists are padded with `O`).

    Returns:
        `{"precision", "recall", "f1", "per_type": {type: {"precision", "recall", "f1", "support"}}}`.
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    gold = [list(tags) for tags in gold]
    predicted = pad_predictions(gold, predicted)
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {
        name: {
            "precision": float(values["precision"]),
            "recall": float(values["recall"]),
            "f1": float(values["f1-score"]),
            "support": int(values["support"]),
        }
        for name, values in report.items()
        if not name.endswith(" avg")
    }
    return {
        "precision": float(precision_score(gold, predicted, zero_division=0)),
        "recall": float(recall_score(gold, predicted, zero_division=0)),
        "f1": float(f1_score(gold, predicted, zero_division=0)),
        "per_type": per_type,
    }
