"""Deterministic train/validation/test split for corpora that ship as one file.

The same items, ratios and seed always give the same split (a seeded shuffle with exact sizes),
on every machine and Python version. Items that share a group (the sentences cut from one
document) land in the same split, so no document leaks across splits.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from typing import Final, TypeVar

from ner_lightning.contract import TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from ner_lightning.errors import DataError

T = TypeVar("T")
#: Default ratios (train, validation, test).
DEFAULT_RATIOS: Final = (0.8, 0.1, 0.1)
DEFAULT_SEED: Final = 13
_SPLITS: Final = (TRAIN_SPLIT, VALIDATION_SPLIT, TEST_SPLIT)


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, validation[, test]) ratios: non-negative, summing to 1, train and validation > 0.

    Raises:
        DataError: The ratios are unusable.
    """
    values = tuple(float(r) for r in ratios)
    if len(values) == 2:
        values = (*values, 0.0)
    if len(values) != 3 or any(r < 0 for r in values) or abs(sum(values) - 1.0) > 1e-6:
        raise DataError(
            f"ratios {list(ratios)} are not 2 or 3 non-negative numbers summing to 1",
            field="ratios",
            fix="pass e.g. --ratios 0.8 0.1 0.1 (train validation test) or --ratios 0.9 0.1",
        )
    if values[0] == 0 or values[1] == 0:
        raise DataError(
            "train and validation ratios must be above 0 (both splits are required)",
            field="ratios",
            fix="give the train and validation splits a share",
        )
    return values  # type: ignore[return-value]


def split_groups(
    groups: Sequence[Hashable], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED
) -> dict[str, list[int]]:
    """Assign item indices to splits, keeping items of one group together.

    Args:
        groups: One group key per item (e.g. the document an example was cut from); give every
            item its own key to split items independently.
        ratios: Share of groups for train, validation and (optionally) test.
        seed: Shuffle seed.

    Returns:
        Split name -> sorted item indices; the test split only when its ratio is above 0.

    Raises:
        DataError: Bad ratios, or too few groups to give every requested split at least one.
    """
    values = check_ratios(ratios)
    keys = list(dict.fromkeys(groups))  # first-appearance order, independent of hashing
    wanted = [name for name, ratio in zip(_SPLITS, values, strict=True) if ratio > 0]
    if len(keys) < len(wanted):
        raise DataError(
            f"{len(keys)} group(s) cannot fill {len(wanted)} splits",
            field="ratios",
            fix="provide more sentences/documents or drop the test split (--ratios 0.9 0.1)",
        )
    order = list(range(len(keys)))
    random.Random(seed).shuffle(order)
    sizes = [round(ratio * len(keys)) for ratio in values]
    # Every requested split gets at least one group; rounding leftovers go to train.
    for index, ratio in enumerate(values):
        if ratio > 0 and sizes[index] == 0:
            sizes[index] = 1
    sizes[0] = len(keys) - sizes[1] - sizes[2]
    if sizes[0] < 1:
        raise DataError(
            f"{len(keys)} group(s) leave no training data at ratios {list(values)}",
            field="ratios",
            fix="provide more data or raise the train ratio",
        )
    assignment: dict[Hashable, str] = {}
    position = 0
    for name, size in zip(_SPLITS, sizes, strict=True):
        for key_index in order[position : position + size]:
            assignment[keys[key_index]] = name
        position += size
    result: dict[str, list[int]] = {name: [] for name in wanted}
    for item, group in enumerate(groups):
        result[assignment[group]].append(item)
    return result


def split_items(
    items: Sequence[T],
    groups: Sequence[Hashable] | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = DEFAULT_SEED,
) -> dict[str, list[T]]:
    """Split items (kept in their original order inside each split); see `split_groups`."""
    keys = list(range(len(items))) if groups is None else list(groups)
    return {name: [items[i] for i in indices] for name, indices in split_groups(keys, ratios, seed).items()}
