"""Tiny tokenizers built from the toy dataset's text: a BERT WordPiece one and a sentencepiece-style Unigram one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from tests.conftest import FIXTURES

TOY_DATASET = FIXTURES / "toy_dataset"


def toy_texts() -> list[str]:
    """Every sentence of the toy dataset as one string."""
    texts = []
    for path in sorted(TOY_DATASET.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.append(" ".join(json.loads(line)["tokens"]))
    return texts


def build_wordpiece() -> PreTrainedTokenizerFast:
    """BERT layout `[CLS] x [SEP]`, lower-cased WordPiece with a small vocabulary (words split into pieces)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        toy_texts(), trainers.WordPieceTrainer(vocab_size=160, special_tokens=specials)
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def build_unigram(single: str = "[CLS] $A [SEP]") -> PreTrainedTokenizerFast:
    """Sentencepiece-style Unigram with Metaspace (`▁` word starts), special layout given by `single`."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "</s>"]
    trainer = trainers.UnigramTrainer(vocab_size=140, special_tokens=specials, unk_token="<unk>")
    tokenizer.train_from_iterator(toy_texts(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single,
        special_tokens=[(name, tokenizer.token_to_id(name)) for name in ("[CLS]", "[SEP]", "</s>")],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", cls_token="[CLS]", sep_token="[SEP]"
    )


@pytest.fixture(scope="session")
def wordpiece() -> PreTrainedTokenizerFast:
    return build_wordpiece()


@pytest.fixture(scope="session")
def unigram() -> PreTrainedTokenizerFast:
    return build_unigram()


@pytest.fixture(scope="session")
def tokenizer_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both tokenizers saved as local folders, as `NerDataModule(tokenizer=...)` loads them."""
    root = tmp_path_factory.mktemp("tokenizers")
    folders = {}
    for name, tokenizer in (("wordpiece", build_wordpiece()), ("unigram", build_unigram())):
        tokenizer.save_pretrained(root / name)
        folders[name] = root / name
    return folders
