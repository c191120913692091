"""The numpy Viterbi (the one CRF decode of training and serving) equals pytorch-crf's decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchcrf import CRF

from ner_lightning.model.crf import DISALLOWED_SCORE, IOB2CRF
from ner_lightning.onnx.viterbi import CrfScores, argmax_decode, viterbi_decode
from ner_lightning.tags import is_allowed_transition

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]


def _numpy_scores(crf: IOB2CRF) -> CrfScores:
    return CrfScores.constrained(
        crf.transitions.detach().numpy(),
        crf.start_transitions.detach().numpy(),
        crf.end_transitions.detach().numpy(),
        crf.allowed_transitions.numpy(),
        crf.allowed_start.numpy(),
        crf.allowed_end.numpy(),
        DISALLOWED_SCORE,
    )


@pytest.mark.parametrize("seed", range(40))
def test_numpy_viterbi_equals_torch_crf_decode(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    crf = IOB2CRF(LABELS)
    with torch.no_grad():
        # Large random scores so the IOB2 constraints actually bite.
        for parameter in (crf.transitions, crf.start_transitions, crf.end_transitions):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 3)
    batch, width = 6, int(torch.randint(1, 12, (1,), generator=generator))
    emissions = torch.randn(batch, width, len(LABELS), generator=generator) * 4
    lengths = torch.randint(0, width + 1, (batch,), generator=generator)
    lengths[0] = width  # at least one full row
    mask = torch.arange(width)[None, :] < lengths[:, None]

    # Reference: pytorch-crf's own Viterbi over the decode-time (IOB2-masked) scores.
    reference = CRF(len(LABELS), batch_first=True)
    transitions, start, end = crf.constrained_scores()
    with torch.no_grad():
        reference.transitions.copy_(transitions)
        reference.start_transitions.copy_(start)
        reference.end_transitions.copy_(end)
    rows = lengths > 0
    expected_rows = iter(reference.decode(emissions[rows], mask=mask[rows]))
    expected = [next(expected_rows) if length > 0 else [] for length in lengths.tolist()]
    got = viterbi_decode(emissions.numpy(), lengths.numpy(), _numpy_scores(crf))

    for row in range(batch):
        assert got[row] == expected[row]
        tags = [LABELS[i] for i in got[row]]
        assert all(is_allowed_transition(p, c) for p, c in zip([None, *tags], tags, strict=False))


def test_unconstrained_numpy_viterbi_equals_pytorch_crf_reference() -> None:
    torch.manual_seed(0)
    crf = IOB2CRF(LABELS, constrained=False)
    emissions = torch.randn(8, 9, len(LABELS))
    lengths = torch.tensor([9, 1, 5, 9, 3, 7, 2, 9])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    reference = crf.decode(emissions, mask=mask)  # pytorch-crf's own algorithm
    scores = CrfScores(
        crf.transitions.detach().numpy(),
        crf.start_transitions.detach().numpy(),
        crf.end_transitions.detach().numpy(),
    )
    assert viterbi_decode(emissions.numpy(), lengths.numpy(), scores) == reference


def test_empty_rows_and_argmax() -> None:
    scores = CrfScores(np.zeros((2, 2), np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32))
    emissions = np.array([[[0.0, 1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], dtype=np.float32)
    assert viterbi_decode(emissions, [2, 0], scores) == [[1, 0], []]
    assert argmax_decode(emissions, [2, 0]) == [[1, 0], []]
