"""IOB2-constrained CRF head: its decode (the shared numpy decoder) equals brute force, paths are valid
IOB2, subword gaps are handled."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchcrf import CRF

from ner_lightning.decoding import decode_words
from ner_lightning.model.crf import IOB2CRF, gather_words
from ner_lightning.model.heads import CRFHead
from ner_lightning.tags import is_allowed_transition

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _random_crf(seed: int, constrained: bool = True) -> IOB2CRF:
    torch.manual_seed(seed)
    crf = IOB2CRF(LABELS, constrained=constrained)
    with torch.no_grad():
        for parameter in crf.parameters():
            parameter.normal_(0.0, 2.0)
    return crf


def _decode(crf: IOB2CRF, emissions: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """Decode as training and serving do: the CRF head's registered numpy decoder over the word positions."""
    head = CRFHead(constrained=crf.constrained)
    head.build(4, LABELS)
    head.crf = crf
    return torch.from_numpy(decode_words(emissions.numpy(), word_mask.numpy(), head.decoder()))


def _brute_force(crf: IOB2CRF, emissions: torch.Tensor) -> list[int]:
    transitions, start, end = crf.constrained_scores()
    best, best_path = None, None
    for path in itertools.product(range(len(LABELS)), repeat=emissions.size(0)):
        score = start[path[0]] + emissions[0, path[0]] + end[path[-1]]
        for step in range(1, len(path)):
            score = score + transitions[path[step - 1], path[step]] + emissions[step, path[step]]
        if best is None or score > best:
            best, best_path = score, list(path)
    assert best_path is not None
    return best_path


def _valid(tags: list[str]) -> bool:
    previous = None
    for tag in tags:
        if not is_allowed_transition(previous, tag):
            return False
        previous = tag
    return True


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("constrained", [True, False])
def test_decode_equals_brute_force(seed: int, constrained: bool) -> None:
    crf = _random_crf(seed, constrained)
    generator = torch.Generator().manual_seed(100 + seed)
    lengths = [1, 2, 4, 5]
    emissions = torch.randn(len(lengths), max(lengths), len(LABELS), generator=generator) * 3
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        paths = _decode(crf, emissions, mask)
    for row, length in enumerate(lengths):
        expected = _brute_force(crf, emissions[row, :length])
        assert paths[row, :length].tolist() == expected
        assert (paths[row, length:] == -1).all()
        if constrained:
            assert _valid([LABELS[i] for i in expected])


def test_constraints_override_strong_invalid_scores() -> None:
    crf = IOB2CRF(LABELS)
    emissions = torch.full((1, 3, len(LABELS)), -5.0)
    emissions[0, :, LABELS.index("I-PER")] = 10.0  # I-PER everywhere would be the unconstrained argmax
    with torch.no_grad():
        path = _decode(crf, emissions, torch.ones(1, 3, dtype=torch.bool))[0].tolist()
    tags = [LABELS[i] for i in path]
    assert _valid(tags)
    assert tags == ["B-PER", "I-PER", "I-PER"]
    unconstrained = IOB2CRF(LABELS, constrained=False)
    with torch.no_grad():
        unconstrained.transitions.zero_()
        unconstrained.start_transitions.zero_()
        unconstrained.end_transitions.zero_()
        assert _decode(unconstrained, emissions, torch.ones(1, 3, dtype=torch.bool))[0].tolist() == [2, 2, 2]


def test_decode_matches_pytorch_crf_without_constraints() -> None:
    crf = _random_crf(7, constrained=False)
    reference = CRF(len(LABELS), batch_first=True)
    reference.load_state_dict(crf.state_dict())
    emissions = torch.randn(3, 6, len(LABELS))
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5], dtype=torch.bool)
    with torch.no_grad():
        paths = _decode(crf, emissions, mask)
    for row, expected in enumerate(reference.decode(emissions, mask)):
        assert paths[row, : len(expected)].tolist() == expected


def test_gather_words_left_aligns_first_subwords() -> None:
    values = torch.arange(12).reshape(2, 6)
    word_mask = torch.tensor([[0, 1, 0, 1, 1, 0], [0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    steps = gather_words(values, word_mask)
    assert steps.mask.tolist() == [[True, True, True], [True, False, False]]
    assert steps.values[0].tolist() == [1, 3, 4]
    assert steps.values[1, 0].item() == 9
    assert steps.positions[0].tolist() == [1, 3, 4]


def test_subword_gaps_do_not_change_the_likelihood_or_decode() -> None:
    """Word-level scores spread over subwords with gaps give the same loss and tags as dense words."""
    crf = _random_crf(3)
    words = torch.randn(1, 4, len(LABELS))
    tags = torch.tensor([[1, 2, 0, 3]])
    word_positions = [1, 2, 5, 7]  # [CLS] w0 w1 ## ## w2 ## w3 [SEP]
    emissions = torch.randn(1, 9, len(LABELS)) * 100  # noise at non-word positions must be ignored
    labels = torch.full((1, 9), -100)
    word_mask = torch.zeros(1, 9, dtype=torch.bool)
    for step, position in enumerate(word_positions):
        emissions[0, position] = words[0, step]
        labels[0, position] = tags[0, step]
        word_mask[0, position] = True
    dense_nll = -crf(words, tags, reduction="sum")
    assert torch.allclose(crf.word_nll(emissions, labels, word_mask), dense_nll)
    with torch.no_grad():
        decoded = _decode(crf, emissions, word_mask)
        dense = _decode(crf, words, torch.ones(1, 4, dtype=torch.bool))
    assert decoded[0, word_positions].tolist() == dense[0].tolist()
    assert (decoded[0, [0, 3, 4, 6, 8]] == -1).all()


def test_rows_without_words_add_no_loss() -> None:
    crf = _random_crf(5)
    emissions = torch.randn(2, 5, len(LABELS))
    labels = torch.tensor([[-100, 1, 2, 0, -100], [-100] * 5])
    word_mask = labels != -100
    alone = crf.word_nll(emissions[:1], labels[:1], word_mask[:1])
    assert torch.allclose(crf.word_nll(emissions, labels, word_mask), alone)
    decoded = _decode(crf, emissions, word_mask)
    assert (decoded[1] == -1).all()


def test_allowed_masks_follow_iob2() -> None:
    crf = IOB2CRF(LABELS)
    for i, previous in enumerate(LABELS):
        for j, current in enumerate(LABELS):
            assert bool(crf.allowed_transitions[i, j]) == is_allowed_transition(previous, current)
    assert crf.allowed_start.tolist() == [True, True, False, True, False]
    assert "allowed_transitions" not in crf.state_dict()
