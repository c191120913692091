"""Viterbi decoding of CRF scores in numpy, for serving ONNX emissions without torch.

The exported graph stops at the emissions; the CRF scores and the IOB2 allowed masks travel in
`ner_model.json`. This module replays the PyTorch CRF decode (pytorch-crf's algorithm, the same
float32 operation order and first-index tie-breaking) so the ONNX model folder alone reproduces
the PyTorch tags exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ner_lightning.errors import ModelError


@dataclass(frozen=True)
class CrfScores:
    """The scores a linear-chain CRF decodes with, constraints already applied.

    Disallowed IOB2 moves carry `disallowed_score` (the value the PyTorch CRF uses at decode time),
    so a plain Viterbi over these arrays is the constrained decode.

    Args:
        transitions: `[L, L]` score of moving from tag i (row) to tag j (column).
        start_transitions: `[L]` score of starting with each tag.
        end_transitions: `[L]` score of ending with each tag.
    """

    transitions: np.ndarray
    start_transitions: np.ndarray
    end_transitions: np.ndarray

    def __post_init__(self) -> None:
        size = self.start_transitions.shape[0]
        if self.transitions.shape != (size, size) or self.end_transitions.shape != (size,):
            raise ModelError(
                f"CRF scores do not agree in size: transitions {self.transitions.shape}, "
                f"start {self.start_transitions.shape}, end {self.end_transitions.shape}",
                field="crf",
                fix="re-export the model; the metadata was edited or truncated",
            )

    @property
    def num_tags(self) -> int:
        """Number of tags the CRF decodes."""
        return int(self.start_transitions.shape[0])

    @classmethod
    def constrained(
        cls,
        transitions: Any,
        start_transitions: Any,
        end_transitions: Any,
        allowed_transitions: Any,
        allowed_start: Any,
        allowed_end: Any,
        disallowed_score: float,
    ) -> CrfScores:
        """Build decode-time scores from raw CRF parameters and IOB2 allowed masks.

        Args:
            transitions: `[L, L]` learned transition scores.
            start_transitions: `[L]` learned start scores.
            end_transitions: `[L]` learned end scores.
            allowed_transitions: `[L, L]` bool, True where tag j may follow tag i.
            allowed_start: `[L]` bool, True where a sentence may start with the tag.
            allowed_end: `[L]` bool, True where a sentence may end with the tag.
            disallowed_score: Score that replaces disallowed moves (the PyTorch CRF's `DISALLOWED_SCORE`).
        """
        fill = np.float32(disallowed_score)

        def masked(values: Any, allowed: Any) -> np.ndarray:
            values = np.asarray(values, dtype=np.float32)
            return np.where(np.asarray(allowed, dtype=bool), values, fill).astype(np.float32)

        return cls(
            masked(transitions, allowed_transitions),
            masked(start_transitions, allowed_start),
            masked(end_transitions, allowed_end),
        )


def viterbi_decode(
    emissions: np.ndarray, lengths: Sequence[int] | np.ndarray, crf: CrfScores
) -> list[list[int]]:
    """Best tag sequence of each row, as the PyTorch CRF decode computes it.

    Args:
        emissions: `[B, T, L]` float scores, left-aligned (row b is valid for its first `lengths[b]` steps).
        lengths: Number of valid steps per row; rows of length 0 decode to `[]`.
        crf: Decode-time CRF scores.

    Returns:
        One list of tag ids per row, of that row's length.
    """
    emissions = np.asarray(emissions, dtype=np.float32)
    lengths = np.asarray(lengths, dtype=np.int64)
    if emissions.ndim != 3 or emissions.shape[2] != crf.num_tags:
        raise ModelError(
            f"emissions of shape {emissions.shape} do not fit a CRF over {crf.num_tags} tags",
            field="emissions",
            fix="check that labels.json and the CRF scores belong to this model",
        )
    batch, steps, _ = emissions.shape
    results: list[list[int]] = [[] for _ in range(batch)]
    rows = np.flatnonzero(lengths > 0)
    if rows.size == 0 or steps == 0:
        return results
    emissions = emissions[rows]
    lengths = lengths[rows]
    score = crf.start_transitions[None, :] + emissions[:, 0]
    history = []
    for step in range(1, int(lengths.max())):
        # Same operation order as pytorch-crf: (score + transitions) + emission, max over the previous tag.
        candidates = score[:, :, None] + crf.transitions[None, :, :] + emissions[:, step][:, None, :]
        best_previous = candidates.argmax(axis=1)
        best_score = np.take_along_axis(candidates, best_previous[:, None, :], axis=1)[:, 0]
        score = np.where((step < lengths)[:, None], best_score, score)
        history.append(best_previous)
    score = score + crf.end_transitions[None, :]
    for position, row in enumerate(rows):
        tag = int(score[position].argmax())
        path = [tag]
        for back in reversed(history[: lengths[position] - 1]):
            tag = int(back[position, tag])
            path.append(tag)
        results[row] = path[::-1]
    return results


def argmax_decode(emissions: np.ndarray, lengths: Sequence[int] | np.ndarray) -> list[list[int]]:
    """Per-step argmax for models without a CRF (`lengths` as in `viterbi_decode`)."""
    best = np.asarray(emissions).argmax(axis=-1)
    return [best[row, : int(length)].tolist() for row, length in enumerate(lengths)]
