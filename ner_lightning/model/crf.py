"""Linear-chain CRF over words, with IOB2 constraints applied at decode time.

The CRF runs over the first subword of each word only. Those positions have gaps between them
(continuation subwords, special tokens), so they are gathered left-aligned first: word `k` of a
row sits at step `k` and the mask is a prefix of True values, as pytorch-crf requires.

Training uses the unconstrained likelihood (pytorch-crf's). Decoding replaces the scores of moves
that strict IOB2 forbids (`O -> I-X`, `B-X -> I-Y`, a sentence starting with `I-X`) by
`DISALLOWED_SCORE`, so the decoded path is always valid IOB2. The allowed masks are buffers;
decoding itself is the numpy Viterbi (`ner_lightning/onnx/viterbi.py`, registered as decoder
`crf_viterbi` in `ner_lightning.decoding`), shared by training-time evaluation and the ONNX predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torchcrf import CRF

from ner_lightning.tags import is_allowed_transition

#: Score given to moves that IOB2 forbids at decode time (finite, so no inf - inf NaNs).
DISALLOWED_SCORE = -10000.0


class WordSteps(NamedTuple):
    """First-subword positions gathered left-aligned.

    Attributes:
        values: `[B, W, ...]` gathered values (step k of a row is its k-th word).
        mask: `[B, W]` bool, a prefix of True values per row.
        positions: `[B, W]` position in the subword sequence each step came from (0 past the mask).
    """

    values: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


def gather_words(values: torch.Tensor, word_mask: torch.Tensor) -> WordSteps:
    """Gather the positions where `word_mask` is True to the left of each row, in order.

    Args:
        values: `[B, T]` or `[B, T, L]` tensor.
        word_mask: `[B, T]` bool, True at the first subword of each word.

    Returns:
        The gathered values with their gap-free mask and source positions; `W` is at least 1.
    """
    word_mask = word_mask.bool()
    counts = word_mask.sum(dim=1)
    width = max(int(counts.max().item()) if counts.numel() else 0, 1)
    # A stable sort of "not a word" puts the word positions first, in their original order.
    order = torch.argsort((~word_mask).to(torch.int8), dim=1, stable=True)[:, :width]
    steps = torch.arange(width, device=values.device)
    mask = steps[None, :] < counts[:, None]
    positions = torch.where(mask, order, torch.zeros_like(order))
    if values.dim() == 3:
        gathered = values.gather(1, positions[:, :, None].expand(-1, -1, values.size(2)))
    else:
        gathered = values.gather(1, positions)
    return WordSteps(gathered, mask, positions)


def iob2_masks(label_names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Allowed IOB2 moves of a label list.

    Returns:
        `(allowed_transitions [L, L], allowed_start [L], allowed_end [L])` bool tensors;
        `allowed_transitions[i, j]` is True when label j may follow label i.
    """
    size = len(label_names)
    transitions = torch.tensor(
        [[is_allowed_transition(previous, current) for current in label_names] for previous in label_names],
        dtype=torch.bool,
    ).reshape(size, size)
    start = torch.tensor([is_allowed_transition(None, label) for label in label_names], dtype=torch.bool)
    end = torch.ones(size, dtype=torch.bool)
    return transitions, start, end


class IOB2CRF(CRF):
    """pytorch-crf's CRF (batch first) with IOB2-constrained Viterbi decoding over word steps.

    Args:
        label_names: Ordered label list (IOB2 tags); its length is the number of tags.
        constrained: Apply the IOB2 constraints when decoding (training is unconstrained either way).
    """

    def __init__(self, label_names: Sequence[str], constrained: bool = True) -> None:
        super().__init__(num_tags=len(label_names), batch_first=True)
        self.constrained = constrained
        transitions, start, end = iob2_masks(label_names)
        # Derived from the labels, so kept out of the state dict (checkpoints stay minimal).
        self.register_buffer("allowed_transitions", transitions, persistent=False)
        self.register_buffer("allowed_start", start, persistent=False)
        self.register_buffer("allowed_end", end, persistent=False)

    def constrained_scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The `(transitions, start_transitions, end_transitions)` that decoding uses."""
        if not self.constrained:
            return self.transitions, self.start_transitions, self.end_transitions
        fill = torch.tensor(DISALLOWED_SCORE, dtype=self.transitions.dtype, device=self.transitions.device)
        return (
            torch.where(self.allowed_transitions, self.transitions, fill),
            torch.where(self.allowed_start, self.start_transitions, fill),
            torch.where(self.allowed_end, self.end_transitions, fill),
        )

    def word_nll(
        self, emissions: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean negative log-likelihood per sequence over the word steps.

        Args:
            emissions: `[B, T, L]` subword emissions.
            labels: `[B, T]` label ids (read at the word positions only).
            word_mask: `[B, T]` bool, True at the first subword of each labelled word.

        Returns:
            Scalar loss; rows without words contribute nothing.
        """
        steps = gather_words(emissions, word_mask)
        tags = gather_words(labels, word_mask).values
        has_words = steps.mask[:, 0]
        # pytorch-crf needs step 0 on in every row: rows without words get one dummy step, weighted 0.
        mask = steps.mask.clone()
        mask[:, 0] = True
        tags = torch.where(steps.mask, tags, torch.zeros_like(tags))
        log_likelihood = self(steps.values, tags, mask=mask, reduction="none")
        weights = has_words.to(log_likelihood.dtype)
        return -(log_likelihood * weights).sum() / weights.sum().clamp(min=1.0)
