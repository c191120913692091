"""Length-grouped sampling: batches of similar length waste little compute on padding.

The sampler yields indices in an order where every run of `batch_size` consecutive indices has
similar lengths, so a plain `DataLoader(sampler=..., batch_size=...)` turns it into length-grouped
batches. Being a plain `Sampler` (not a batch sampler) keeps it compatible with Lightning, which
calls `set_epoch` on `dataloader.sampler` every epoch and, under DDP, wraps it in a distributed
sampler that hands each rank every world-size-th index (neighbours in a sorted run, so the
per-rank batches stay length-grouped).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Shuffle, sort by length within mega-batches, then shuffle the order of the batches.

    The order depends only on `seed` and the epoch (set with `set_epoch`), so a run is reproducible
    and each epoch sees a different order. The batch holding the longest item comes first so that an
    out-of-memory error shows at the first step, and the one short batch (if the number of items is
    not a multiple of `batch_size`) comes last so that the DataLoader's chunking stays aligned.

    Args:
        lengths: Length of each item (e.g. its number of subwords).
        batch_size: The DataLoader's batch size.
        seed: Base seed of the shuffles.
        mega_batch_batches: Number of batches per mega-batch; larger groups lengths more tightly
            but makes the order less random.
    """

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int = 42, mega_batch_batches: int = 50
    ) -> None:
        if batch_size < 1 or mega_batch_batches < 1:
            raise ValueError("batch_size and mega_batch_batches must be positive")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.mega_batch_batches = mega_batch_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of `epoch` (Lightning calls this at the start of every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        """The batches of the current epoch, in order."""
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        mega = self.batch_size * self.mega_batch_batches
        batches: list[list[int]] = []
        for begin in range(0, len(order), mega):
            group = sorted(order[begin : begin + mega], key=lambda index: -self.lengths[index])
            batches += [group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        short = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        rng.shuffle(batches)
        if batches:
            longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][0]])
            batches[0], batches[longest] = batches[longest], batches[0]
        if short is not None:
            batches.append(short)
        return batches

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch
