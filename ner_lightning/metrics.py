"""Entity-level precision, recall and F1 over whole words, correct under distributed training.

Each process adds `(example_id, word_index, predicted id, gold id)` rows; torchmetrics gathers the
rows of all processes (`dist_reduce_fx="cat"`) before `compute`, which rebuilds the word-level
tag sequences and hands them to seqeval. Per-rank F1 values are never averaged. A
`DistributedSampler` pads its last batch by repeating samples, so duplicate
`(example_id, word_index)` rows are dropped before scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2
from torchmetrics import Metric


@dataclass
class TypeScore:
    """Scores of one entity type."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EntityScores:
    """Micro-averaged entity scores and the per-type report."""

    precision: float
    recall: float
    f1: float
    per_type: dict[str, TypeScore] = field(default_factory=dict)

    def table(self) -> str:
        """Plain-text per-type table (type, precision, recall, F1, support) with a micro row."""
        width = max([len("micro"), *(len(name) for name in self.per_type)])
        lines = [f"{'type':<{width}}  precision  recall      f1  support"]
        for name, score in sorted(self.per_type.items()):
            lines.append(
                f"{name:<{width}}  {score.precision:9.4f}  {score.recall:6.4f}  {score.f1:6.4f}  {score.support:7d}"
            )
        support = sum(score.support for score in self.per_type.values())
        lines.append(
            f"{'micro':<{width}}  {self.precision:9.4f}  {self.recall:6.4f}  {self.f1:6.4f}  {support:7d}"
        )
        return "\n".join(lines)


def score_sequences(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]], strict: bool
) -> EntityScores:
    """seqeval scores of word-level tag sequences.

    Args:
        gold: Gold IOB2 tags, one list per sentence.
        predicted: Predicted tags, aligned with `gold`.
        strict: Strict IOB2 (seqeval `mode="strict", scheme=IOB2`); else conlleval-compatible.
    """
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    report = classification_report(gold, predicted, output_dict=True, zero_division=0, **kwargs)
    per_type = {
        name: TypeScore(
            float(values["precision"]),
            float(values["recall"]),
            float(values["f1-score"]),
            int(values["support"]),
        )
        for name, values in report.items()
        if not name.endswith(" avg")
    }
    return EntityScores(
        precision=float(precision_score(gold, predicted, zero_division=0, **kwargs)),
        recall=float(recall_score(gold, predicted, zero_division=0, **kwargs)),
        f1=float(f1_score(gold, predicted, zero_division=0, **kwargs)),
        per_type=per_type,
    )


class EntityF1(Metric):
    """Entity-level micro precision/recall/F1 with seqeval, over word-level predictions.

    Args:
        label_names: Ordered label list; ids index into it.
        strict: Score in strict IOB2 mode (an `I-X` that does not continue an entity is not one)
            instead of the conlleval-compatible default.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, label_names: Sequence[str], strict: bool = False) -> None:
        super().__init__()
        self.label_names = list(label_names)
        self.strict = strict
        for name in ("example_ids", "word_indices", "predictions", "targets"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        example_ids: torch.Tensor,
        word_indices: torch.Tensor,
        predictions: torch.Tensor,
        targets: torch.Tensor,
    ) -> None:
        """Add one prediction per word.

        Args:
            example_ids: `[N]` sentence index of each word in its split.
            word_indices: `[N]` index of the word in its sentence.
            predictions: `[N]` predicted label ids.
            targets: `[N]` gold label ids.
        """
        self.example_ids.append(example_ids.detach().long().flatten())
        self.word_indices.append(word_indices.detach().long().flatten())
        self.predictions.append(predictions.detach().long().flatten())
        self.targets.append(targets.detach().long().flatten())

    def sequences(self) -> tuple[list[list[str]], list[list[str]]]:
        """Gold and predicted tag sequences, one per example, ordered by example and word index."""
        columns = [self._as_tensor(state) for state in (self.example_ids, self.word_indices)]
        rows = torch.stack(columns, dim=1)
        values = torch.stack([self._as_tensor(self.predictions), self._as_tensor(self.targets)], dim=1)
        if rows.numel() == 0:
            return [], []
        # unique() sorts by (example, word); keep the first row of each duplicated key.
        keys, inverse = torch.unique(rows, dim=0, return_inverse=True)
        first = torch.full((keys.size(0),), rows.size(0), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(rows.size(0)), reduce="amin")
        values = values[first]
        gold: list[list[str]] = []
        predicted: list[list[str]] = []
        previous_example: int | None = None
        for (example, _), (prediction, target) in zip(keys.tolist(), values.tolist(), strict=True):
            if example != previous_example:
                gold.append([])
                predicted.append([])
                previous_example = example
            gold[-1].append(self.label_names[target])
            predicted[-1].append(self.label_names[prediction])
        return gold, predicted

    def compute(self) -> EntityScores:  # type: ignore[override]
        """Scores over every word added on every process."""
        gold, predicted = self.sequences()
        if not gold:
            return EntityScores(0.0, 0.0, 0.0, {})
        return score_sequences(gold, predicted, self.strict)

    @staticmethod
    def _as_tensor(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        # After a distributed sync torchmetrics may hand back one concatenated tensor.
        if isinstance(state, torch.Tensor):
            return state.long().flatten().cpu()
        return torch.cat(state).long().cpu() if state else torch.zeros(0, dtype=torch.long)
