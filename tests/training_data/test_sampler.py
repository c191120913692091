"""Length-grouped sampling: each index once per epoch, reproducible by seed and epoch, batches of similar length."""

from __future__ import annotations

import random
import statistics

from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from ner_lightning.data.sampler import LengthGroupedSampler


def lengths(count: int = 1003) -> list[int]:
    rng = random.Random(0)
    return [rng.randint(3, 300) for _ in range(count)]


def spread(batches: list[list[int]], sizes: list[int]) -> float:
    return statistics.mean(max(sizes[i] for i in b) - min(sizes[i] for i in b) for b in batches)


def test_every_index_once_per_epoch_and_orders_change_with_epoch() -> None:
    sizes = lengths()
    sampler = LengthGroupedSampler(sizes, batch_size=8, seed=3, mega_batch_batches=10)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(sizes)))
        assert len(sampler) == len(sizes)
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]


def test_order_is_deterministic_given_seed_and_epoch() -> None:
    sizes = lengths()
    first = LengthGroupedSampler(sizes, batch_size=8, seed=3)
    second = LengthGroupedSampler(sizes, batch_size=8, seed=3)
    first.set_epoch(5)
    second.set_epoch(5)
    assert list(first) == list(second)
    other_seed = LengthGroupedSampler(sizes, batch_size=8, seed=4)
    other_seed.set_epoch(5)
    assert list(other_seed) != list(first)


def test_batches_have_similar_lengths_longest_first_short_last() -> None:
    sizes = lengths()
    sampler = LengthGroupedSampler(sizes, batch_size=8, seed=1, mega_batch_batches=20)
    batches = sampler.batches()
    assert [len(b) for b in batches[:-1]] == [8] * (len(batches) - 1)
    assert len(batches[-1]) == len(sizes) % 8
    assert max(sizes[i] for i in batches[0]) == max(sizes)
    rng = random.Random(1)
    shuffled = list(range(len(sizes)))
    rng.shuffle(shuffled)
    random_batches = [shuffled[i : i + 8] for i in range(0, len(shuffled), 8)]
    assert spread(batches, sizes) < spread(random_batches, sizes) / 5


def test_dataloader_batches_match_and_lightning_sets_the_epoch() -> None:
    sizes = lengths(100)
    sampler = LengthGroupedSampler(sizes, batch_size=7, seed=2, mega_batch_batches=3)
    loader = DataLoader(list(range(100)), sampler=sampler, batch_size=7, collate_fn=list)
    _set_sampler_epoch(loader, 4)
    assert sampler.epoch == 4
    assert list(loader) == sampler.batches()
