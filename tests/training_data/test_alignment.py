"""Subword alignment with a BERT WordPiece and a sentencepiece-style Unigram tokenizer built from fixture text."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerFast

from ner_lightning.data.datamodule import b_to_i_ids, special_token_layout, word_subword_ids
from ner_lightning.data.records import load_dataset_folder
from ner_lightning.data.windows import IGNORE_INDEX, make_windows, merge_owned
from tests.training_data.conftest import TOY_DATASET, build_unigram

WORDS = ["Zoë", "Kravitz", "flew", "to", "São", "Paulo", ".", "Ngozi", "Okonjo-Iweala"]


def pieces(tokenizer: PreTrainedTokenizerFast, ids: list[int]) -> str:
    """The text of a word's subwords, without WordPiece `##` or sentencepiece `▁` markers."""
    return "".join(t.removeprefix("##").replace("▁", "") for t in tokenizer.convert_ids_to_tokens(ids))


@pytest.mark.parametrize("name", ["wordpiece", "unigram"])
def test_words_split_into_subwords_that_spell_them(name: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(name)
    (grouped,) = word_subword_ids(tokenizer, [WORDS])
    assert len(grouped) == len(WORDS)
    assert any(len(ids) > 1 for ids in grouped), "the tiny vocabulary must split some words"
    for word, ids in zip(WORDS, grouped, strict=True):
        expected = word.lower() if name == "wordpiece" else word
        assert pieces(tokenizer, ids) == expected
        # The same word tokenized alone gives the same subwords: alignment does not depend on neighbours.
        assert word_subword_ids(tokenizer, [[word]])[0][0] == ids
    # One call for a batch gives the same as one call per sentence.
    assert word_subword_ids(tokenizer, [WORDS, WORDS[:3]]) == [grouped, grouped[:3]]


def test_special_token_layout_comes_from_the_tokenizer(
    wordpiece: PreTrainedTokenizerFast, unigram: PreTrainedTokenizerFast
) -> None:
    for tokenizer in (wordpiece, unigram):
        prefix, suffix = special_token_layout(tokenizer)
        assert tokenizer.convert_ids_to_tokens(prefix + suffix) == ["[CLS]", "[SEP]"]
        assert len(prefix) == 1
    suffix_only = build_unigram(single="$A </s>")
    assert special_token_layout(suffix_only) == ([], [suffix_only.convert_tokens_to_ids("</s>")])


@pytest.mark.parametrize("name", ["wordpiece", "unigram"])
@pytest.mark.parametrize("label_all_tokens", [False, True])
def test_long_sentence_gets_one_labelled_prediction_slot_per_word(
    name: str, label_all_tokens: bool, request: pytest.FixtureRequest
) -> None:
    tokenizer = request.getfixturevalue(name)
    folder = load_dataset_folder(TOY_DATASET)
    label_ids = {label: i for i, label in enumerate(folder.labels)}
    example = max(folder.splits["train"], key=lambda e: len(e.tokens))
    (grouped,) = word_subword_ids(tokenizer, [example.tokens])
    prefix, suffix = special_token_layout(tokenizer)
    tags = [label_ids[t] for t in example.tags]
    windows = make_windows(
        grouped,
        prefix,
        suffix,
        max_length=16,
        stride=4,
        tag_ids=tags,
        label_all_tokens=label_all_tokens,
        b_to_i=b_to_i_ids(folder.labels),
    )
    assert sum(len(ids) for ids in grouped) + 2 > 16 and len(windows) > 2
    assert merge_owned(windows, [w.labels for w in windows]) == tags
    words_in_order = [w for window in windows for w in window.owned_words]
    assert words_in_order == list(range(len(example.tokens)))
    for window in windows:
        for position, word in enumerate(window.word_index):
            if word >= 0:
                # The first subword of each word starts the word's text.
                start = pieces(tokenizer, [window.input_ids[position]])
                assert example.tokens[word].lower().startswith(start.lower())
        if not label_all_tokens:
            labelled = [p for p, label in enumerate(window.labels) if label != IGNORE_INDEX]
            assert labelled == [p for p, word in enumerate(window.word_index) if word >= 0]


def test_b_to_i_ids() -> None:
    assert b_to_i_ids(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]) == {1: 2, 3: 4}
