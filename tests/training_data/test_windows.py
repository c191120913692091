"""Word-aligned windows: never truncate a sentence, own every word exactly once, label first subwords."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ner_lightning.data.windows import IGNORE_INDEX, NO_WORD, make_windows, merge_owned

PREFIX, SUFFIX = [1], [2]


@st.composite
def sentences(draw: st.DrawFn) -> dict:
    prefix = draw(st.lists(st.integers(100_000, 100_009), max_size=2))
    suffix = draw(st.lists(st.integers(100_010, 100_019), max_size=2))
    room = draw(st.integers(1, 24))
    counts = draw(st.lists(st.integers(1, room + 3), min_size=1, max_size=50))
    # Subword ids encode (word, piece) so reconstruction can be checked: word w, piece p -> w * 1000 + p;
    # special ids are 100_000 and up.
    words = [[w * 1000 + p for p in range(count)] for w, count in enumerate(counts)]
    return {
        "words": words,
        "prefix": prefix,
        "suffix": suffix,
        "max_length": room + len(prefix) + len(suffix),
        "stride": draw(st.integers(0, room - 1)),
        "tags": draw(st.lists(st.integers(0, 4), min_size=len(words), max_size=len(words))),
        "label_all_tokens": draw(st.booleans()),
    }


B_TO_I = {1: 2, 3: 4}


@settings(max_examples=300, deadline=None)
@given(sentences())
def test_window_properties(case: dict) -> None:
    words, max_length, stride = case["words"], case["max_length"], case["stride"]
    room = max_length - len(case["prefix"]) - len(case["suffix"])
    windows = make_windows(
        words,
        case["prefix"],
        case["suffix"],
        max_length,
        stride,
        tag_ids=case["tags"],
        label_all_tokens=case["label_all_tokens"],
        b_to_i=B_TO_I,
    )
    # Every word is owned by exactly one window, and merging owned positions rebuilds the sentence.
    owned = sorted(word for window in windows for word in window.owned_words)
    assert owned == list(range(len(words)))
    assert merge_owned(windows, [window.word_index for window in windows]) == list(range(len(words)))
    assert merge_owned(windows, [window.labels for window in windows]) == case["tags"]
    previous_end = 0
    for number, window in enumerate(windows):
        ids = window.input_ids
        assert len(ids) <= max_length
        assert len(window.word_index) == len(window.owned) == len(window.labels) == len(ids)
        assert list(ids[: len(case["prefix"])]) == case["prefix"]
        assert list(ids[len(ids) - len(case["suffix"]) :]) == case["suffix"]
        # Whole consecutive words (a word longer than the room keeps its first subwords), no word skipped.
        expected = [piece for word in words[window.word_start : window.word_end] for piece in word[:room]]
        assert list(ids[len(case["prefix"]) : len(ids) - len(case["suffix"])]) == expected
        assert window.word_start <= previous_end if number else window.word_start == 0
        assert window.word_end > previous_end
        shared = sum(min(len(w), room) for w in words[window.word_start : previous_end])
        assert shared <= stride
        previous_end = window.word_end
        for position, token in enumerate(ids):
            word, label = window.word_index[position], window.labels[position]
            first_piece = token < 100_000 and token % 1000 == 0
            assert (word != NO_WORD) == first_piece
            if first_piece:
                assert word == token // 1000 and label == case["tags"][word]
            elif token < 100_000 and case["label_all_tokens"]:
                tag = case["tags"][token // 1000]
                assert label == B_TO_I.get(tag, tag)
            else:
                assert label == IGNORE_INDEX
            assert not window.owned[position] or first_piece
    assert previous_end == len(words)


def test_short_sentence_is_one_window_owning_everything() -> None:
    (window,) = make_windows(
        [[10], [11, 12], [13]], PREFIX, SUFFIX, max_length=8, stride=2, tag_ids=[0, 1, 0]
    )
    assert window.input_ids == (1, 10, 11, 12, 13, 2)
    assert window.word_index == (-1, 0, 1, -1, 2, -1)
    assert window.owned == (False, True, True, False, True, False)
    assert window.labels == (-100, 0, 1, -100, 0, -100)


def test_label_all_tokens_continues_b_as_i() -> None:
    (window,) = make_windows(
        [[10, 11, 12], [13]], PREFIX, SUFFIX, 8, 0, tag_ids=[1, 0], label_all_tokens=True, b_to_i={1: 2}
    )
    assert window.labels == (-100, 1, 2, 2, 0, -100)


def test_ownership_goes_to_the_window_where_the_word_is_most_central() -> None:
    # Ten one-subword words, room 4, overlap 2: windows [0,4) [2,6) [4,8) [6,10).
    windows = make_windows([[100 + i] for i in range(10)], PREFIX, SUFFIX, max_length=6, stride=2)
    assert [(w.word_start, w.word_end) for w in windows] == [(0, 4), (2, 6), (4, 8), (6, 10)]
    # Word 2 is 0 subwords from the cut edge of window 0 and 0 from window 1's left edge: tie -> earlier;
    # word 3 is 0 from window 0's cut edge but 1 from both edges of window 1 -> window 1.
    assert [w.owned_words for w in windows] == [(0, 1, 2), (3, 4), (5, 6), (7, 8, 9)]


def test_word_longer_than_a_window_keeps_its_first_subwords() -> None:
    windows = make_windows(
        [[10], list(range(20, 40)), [50]], PREFIX, SUFFIX, max_length=6, stride=1, tag_ids=[0, 3, 0]
    )
    long_word = [w for w in windows if 1 in w.owned_words]
    assert len(long_word) == 1
    assert long_word[0].input_ids == (1, 20, 21, 22, 23, 2)
    assert long_word[0].labels == (-100, 3, -100, -100, -100, -100)
    assert merge_owned(windows, [w.labels for w in windows]) == [0, 3, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_length": 2, "stride": 0}, "no room"),
        ({"max_length": 6, "stride": 4}, "stride 4"),
        ({"max_length": 6, "stride": -1}, "stride -1"),
    ],
)
def test_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_windows([[10]], PREFIX, SUFFIX, **kwargs)


def test_word_without_subwords_and_wrong_tag_count_are_refused() -> None:
    with pytest.raises(ValueError, match="word 1 has no subword ids"):
        make_windows([[10], []], PREFIX, SUFFIX, 8, 0)
    with pytest.raises(ValueError, match="1 tag ids for 2 words"):
        make_windows([[10], [11]], PREFIX, SUFFIX, 8, 0, tag_ids=[0])


def test_without_tags_labels_are_absent() -> None:
    (window,) = make_windows([[10]], [], [], 4, 0)
    assert window.labels is None and window.input_ids == (10,)
