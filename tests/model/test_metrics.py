"""EntityF1 equals seqeval on the same sequences, dedupes repeated words, and is exact under DDP."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from ner_lightning.metrics import EntityF1

LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]

sentences = st.lists(
    st.lists(
        st.tuples(st.sampled_from(range(len(LABELS))), st.sampled_from(range(len(LABELS)))),
        min_size=1,
        max_size=8,
    ),
    min_size=1,
    max_size=8,
)


def _rows(data: list[list[tuple[int, int]]]) -> tuple[torch.Tensor, ...]:
    example, word, pred, gold = [], [], [], []
    for example_id, sentence in enumerate(data):
        for word_index, (p, g) in enumerate(sentence):
            example.append(example_id)
            word.append(word_index)
            pred.append(p)
            gold.append(g)
    return tuple(torch.tensor(column) for column in (example, word, pred, gold))


def _tags(data: list[list[tuple[int, int]]], which: int) -> list[list[str]]:
    return [[LABELS[pair[which]] for pair in sentence] for sentence in data]


@settings(max_examples=60, deadline=None)
@given(data=sentences, strict=st.booleans(), seed=st.integers(0, 1000))
def test_equals_seqeval_in_any_order(data: list[list[tuple[int, int]]], strict: bool, seed: int) -> None:
    example, word, pred, gold = _rows(data)
    order = torch.randperm(len(example), generator=torch.Generator().manual_seed(seed))
    metric = EntityF1(LABELS, strict=strict)
    half = len(order) // 2
    for chunk in (order[:half], order[half:]):
        metric.update(example[chunk], word[chunk], pred[chunk], gold[chunk])
    scores = metric.compute()
    kwargs = {"mode": "strict", "scheme": IOB2} if strict else {}
    y_true, y_pred = _tags(data, 1), _tags(data, 0)
    assert scores.f1 == pytest.approx(f1_score(y_true, y_pred, zero_division=0, **kwargs))
    assert scores.precision == pytest.approx(precision_score(y_true, y_pred, zero_division=0, **kwargs))
    assert scores.recall == pytest.approx(recall_score(y_true, y_pred, zero_division=0, **kwargs))


def test_repeated_rows_count_once_and_report_per_type() -> None:
    data = [[(1, 1), (2, 2), (0, 0)], [(5, 5), (0, 3)]]
    example, word, pred, gold = _rows(data)
    metric = EntityF1(LABELS)
    metric.update(example, word, pred, gold)
    metric.update(example[:2], word[:2], pred[:2], gold[:2])  # a DistributedSampler repeat
    scores = metric.compute()
    assert scores.precision == 1.0
    assert scores.recall == pytest.approx(2 / 3)
    assert set(scores.per_type) == {"LOC", "MISC", "PER"}
    assert scores.per_type["MISC"].recall == 0.0
    assert scores.per_type["LOC"].support == 1
    assert "micro" in scores.table()


def test_strict_mode_differs_on_dangling_inside_tags() -> None:
    data = [[(2, 1), (2, 2)]]  # predicted I-LOC I-LOC, gold B-LOC I-LOC
    lenient, strict = EntityF1(LABELS), EntityF1(LABELS, strict=True)
    for metric in (lenient, strict):
        metric.update(*_rows(data))
    assert lenient.compute().f1 == 1.0
    assert strict.compute().f1 == 0.0


def test_empty_metric_scores_zero() -> None:
    assert EntityF1(LABELS).compute().f1 == 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, data: list, result_file: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        example, word, pred, gold = _rows(data)
        rows = torch.arange(len(example))
        # An exact partition of every word row, plus the samples a DistributedSampler repeats to
        # even out the ranks (rank 1 sees rows 0 and the last one a second time).
        chunk = rows[0::2] if rank == 0 else torch.cat([rows[1::2], torch.tensor([0, len(example) - 1])])
        metric = EntityF1(LABELS)
        metric.update(example[chunk], word[chunk], pred[chunk], gold[chunk])
        scores = metric.compute()
        if rank == 0:
            with open(result_file, "w", encoding="utf-8") as handle:
                handle.write(repr((scores.precision, scores.recall, scores.f1)))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_gather_equals_single_process(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    data = [
        [
            (int(p), int(g))
            for p, g in torch.randint(0, len(LABELS), (int(n), 2), generator=generator).tolist()
        ]
        for n in torch.randint(1, 9, (40,), generator=generator)
    ]
    single = EntityF1(LABELS)
    single.update(*_rows(data))
    expected = single.compute()
    # One rank's own score differs from the whole: averaging per-rank F1 would fail this test.
    example, word, pred, gold = _rows(data)
    half = EntityF1(LABELS)
    half.update(example[0::2], word[0::2], pred[0::2], gold[0::2])
    assert half.compute().f1 != expected.f1
    result_file = tmp_path / "rank0.txt"
    mp.start_processes(
        _worker, args=(_free_port(), data, str(result_file)), nprocs=2, join=True, start_method="spawn"
    )
    assert eval(result_file.read_text(encoding="utf-8")) == (expected.precision, expected.recall, expected.f1)
