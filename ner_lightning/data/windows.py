"""Word-aligned subword windows: split a long sentence into overlapping windows, never truncate it.

Pure Python (no torch, no transformers): the training data module and the ONNX predictor (which
uses the `tokenizers` library directly) both build their model inputs here, so training and
serving cut sentences the same way.

The caller tokenizes each word into subword ids (without special tokens) and asks its tokenizer
once for the special ids that go before (`prefix_ids`) and after (`suffix_ids`) a single sequence,
e.g. `[CLS]` / `[SEP]` for BERT, `[CLS]` / `[SEP]` or none for sentencepiece models.

Rules:
- A window holds at most `max_length` ids including the specials, and only whole words, except
  that a single word longer than a window keeps only its first subwords (its first subword is the
  labelled one, so it still gets its prediction).
- Consecutive windows overlap by the longest run of whole trailing words whose subwords total at
  most `stride` and that leaves room for the next new word (so the windows always advance).
- Ownership: every word is owned by exactly one window, the one in which it is farthest from a cut
  edge. The distance of a word to an edge is the number of subwords between them, and a window
  edge that is also the sentence edge counts as infinitely far (no context is missing there). Ties
  go to the earlier window. Predictions are read only at owned words, so every word gets exactly
  one prediction, taken where it sees the most context on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

#: Label id of positions that take no part in the loss (PyTorch's CrossEntropyLoss default).
IGNORE_INDEX = -100
#: `word_index` at special tokens, continuation subwords and padding.
NO_WORD = -1

T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    """One model input cut from a sentence.

    Args:
        input_ids: Subword ids including the special tokens, at most `max_length` of them.
        word_index: Per position, the word's index in the sentence at its first subword, else -1.
        owned: Per position, True at the first subword of a word this window is responsible for.
        labels: Per position, the label id (first subword; every subword with `label_all_tokens`),
            else -100. None when no tags were given.
        word_start: Index of the first word in the window.
        word_end: Index one past the last word in the window.
    """

    input_ids: tuple[int, ...]
    word_index: tuple[int, ...]
    owned: tuple[bool, ...]
    labels: tuple[int, ...] | None
    word_start: int
    word_end: int

    @property
    def owned_words(self) -> tuple[int, ...]:
        """Indices of the words this window owns, in order."""
        return tuple(w for w, own in zip(self.word_index, self.owned, strict=True) if own)


def make_windows(
    word_subword_ids: Sequence[Sequence[int]],
    prefix_ids: Sequence[int],
    suffix_ids: Sequence[int],
    max_length: int,
    stride: int,
    tag_ids: Sequence[int] | None = None,
    label_all_tokens: bool = False,
    b_to_i: Mapping[int, int] | None = None,
) -> list[Window]:
    """Cut one sentence into word-aligned windows (see the module docstring for the rules).

    Args:
        word_subword_ids: Per word, its subword ids without special tokens; each word needs at least
            one (map a word the tokenizer drops to the unknown-token id).
        prefix_ids: Special ids before the words (e.g. `[CLS]`).
        suffix_ids: Special ids after the words (e.g. `[SEP]`).
        max_length: Most ids per window, specials included.
        stride: Most subwords shared by two consecutive windows (whole words only).
        tag_ids: Per word, its label id; None when predicting without gold tags.
        label_all_tokens: Label continuation subwords too instead of -100.
        b_to_i: With `label_all_tokens`, label id -> label id for continuations (`B-X` -> `I-X`);
            ids not in it are kept.

    Returns:
        The windows in sentence order; an empty sentence gives no window.

    Raises:
        ValueError: The window has no room for a word, `stride` is negative or not smaller than the
            room for words, a word has no subwords, or `tag_ids` has the wrong length.
    """
    room = max_length - len(prefix_ids) - len(suffix_ids)
    if room < 1:
        raise ValueError(
            f"max_length {max_length} leaves no room for words after {len(prefix_ids) + len(suffix_ids)} special tokens"
        )
    if not 0 <= stride < room:
        raise ValueError(
            f"stride {stride} must be >= 0 and smaller than max_length minus special tokens ({room})"
        )
    if tag_ids is not None and len(tag_ids) != len(word_subword_ids):
        raise ValueError(f"{len(tag_ids)} tag ids for {len(word_subword_ids)} words")
    for position, ids in enumerate(word_subword_ids):
        if not ids:
            raise ValueError(f"word {position} has no subword ids (map it to the unknown token)")
    words = [list(ids[:room]) for ids in word_subword_ids]
    spans = _window_spans([len(ids) for ids in words], room, stride)
    owner = _owners(spans, [len(ids) for ids in words])
    windows = []
    for number, (start, end) in enumerate(spans):
        input_ids = list(prefix_ids)
        word_index = [NO_WORD] * len(prefix_ids)
        owned = [False] * len(prefix_ids)
        labels = [IGNORE_INDEX] * len(prefix_ids)
        for word in range(start, end):
            count = len(words[word])
            input_ids += words[word]
            word_index += [word] + [NO_WORD] * (count - 1)
            owned += [owner[word] == number] + [False] * (count - 1)
            if tag_ids is not None:
                tag = tag_ids[word]
                follow = (b_to_i or {}).get(tag, tag) if label_all_tokens else IGNORE_INDEX
                labels += [tag] + [follow] * (count - 1)
        input_ids += suffix_ids
        word_index += [NO_WORD] * len(suffix_ids)
        owned += [False] * len(suffix_ids)
        labels += [IGNORE_INDEX] * len(suffix_ids)
        windows.append(
            Window(
                input_ids=tuple(input_ids),
                word_index=tuple(word_index),
                owned=tuple(owned),
                labels=tuple(labels) if tag_ids is not None else None,
                word_start=start,
                word_end=end,
            )
        )
    return windows


def _window_spans(counts: Sequence[int], room: int, stride: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) of the windows, given per-word subword counts (each <= room)."""
    spans: list[tuple[int, int]] = []
    start, total = 0, len(counts)
    while start < total:
        end, used = start, 0
        while end < total and used + counts[end] <= room:
            used += counts[end]
            end += 1
        spans.append((start, end))
        if end == total:
            break
        # Step back over whole trailing words while they fit in the overlap and still leave room for
        # the next new word, so that every window advances.
        next_start, shared = end, 0
        while (
            next_start - 1 > start
            and shared + counts[next_start - 1] <= stride
            and shared + counts[next_start - 1] + counts[end] <= room
        ):
            next_start -= 1
            shared += counts[next_start]
        start = next_start
    return spans


def _owners(spans: Sequence[tuple[int, int]], counts: Sequence[int]) -> list[int]:
    """Index of the owning window for each word (see the ownership rule in the module docstring)."""
    before = [0]
    for count in counts:
        before.append(before[-1] + count)
    total = len(counts)
    owner = [-1] * total
    best = [-1.0] * total
    for number, (start, end) in enumerate(spans):
        for word in range(start, end):
            left = math.inf if start == 0 else before[word] - before[start]
            right = math.inf if end == total else before[end] - before[word + 1]
            distance = min(left, right)
            if distance > best[word]:
                best[word], owner[word] = distance, number
    return owner


def merge_owned(windows: Sequence[Window], position_values: Sequence[Sequence[T]]) -> list[T]:
    """Rebuild one value per word of a sentence from per-position values of its windows.

    Args:
        windows: All windows of one sentence, as `make_windows` returned them.
        position_values: Per window, one value per position (e.g. the predicted label id or the
            emission row); positions past the window's length (padding) are ignored.

    Returns:
        One value per word, read at the word's owned first subword.
    """
    if len(windows) != len(position_values):
        raise ValueError(f"{len(position_values)} value rows for {len(windows)} windows")
    count = max((window.word_end for window in windows), default=0)
    unset = object()
    merged: list[object] = [unset] * count
    for window, values in zip(windows, position_values, strict=True):
        for position, (word, own) in enumerate(zip(window.word_index, window.owned, strict=True)):
            if own:
                merged[word] = values[position]
    missing = [word for word, value in enumerate(merged) if value is unset]
    if missing:
        raise ValueError(f"words {missing[:5]} are owned by no window")
    return merged  # type: ignore[return-value]
