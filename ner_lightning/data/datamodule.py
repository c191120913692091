"""`NerDataModule`: a dataset folder -> tokenized, windowed, dynamically padded training batches.

The batch format is the contract in docs/architecture.md ("Training batch"): `input_ids`,
`attention_mask` (and `token_type_ids` when the tokenizer makes them), `labels`, `word_index`,
`owned` and `example_id`. Long sentences are cut into overlapping windows by
`ner_lightning.data.windows`, so no word is ever truncated away and every word is owned by
exactly one window (one prediction per gold word).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ner_lightning.contract import SPLIT_FILES, TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from ner_lightning.data.records import DatasetFolder, Example, load_dataset_folder
from ner_lightning.data.sampler import LengthGroupedSampler
from ner_lightning.data.windows import IGNORE_INDEX, NO_WORD, Window, make_windows
from ner_lightning.errors import ConfigError, DataError, ModelError
from ner_lightning.resources import resolve_path
from ner_lightning.tags import split_tag

#: Sentences tokenized per tokenizer call (bounds memory on large splits).
_ENCODE_CHUNK = 1024
#: Values shown in the fix of an out-of-range window or batch setting.
_EXAMPLE_VALUES = {"max_length": 64, "batch_size": 8, "stride": 16}
#: Positions in a model input; `max_length` above this is a configuration mistake.
_TOKENIZER_LENGTH_SENTINEL = 1_000_000


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer by local path, `pkg:` reference or hub name (offline jobs need a local one).

    Args:
        name: Local folder, `pkg:<package>/<path>` or Hugging Face hub name.

    Raises:
        ConfigError: `name` is empty or names a package that is not installed.
        ModelError: The tokenizer cannot be loaded, or it is not a fast tokenizer (word alignment
            needs `word_ids()`).
    """
    if not name:
        raise ConfigError(
            "no tokenizer given",
            field="data.tokenizer",
            fix="set model.backbone (the CLI links it to data.tokenizer) or pass --data.tokenizer <local folder>",
        )
    path = resolve_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(
            f"cannot load a tokenizer from {name!r} offline ({type(error).__name__}: {error})",
            field="data.tokenizer",
            fix="point at a local folder that holds the tokenizer files (tokenizer.json, tokenizer_config.json), "
            "or a `pkg:<package>/<folder>` reference; the model hub is not reachable from jobs",
        ) from error
    if not tokenizer.is_fast:
        raise ModelError(
            f"{name!r} has no fast tokenizer; word alignment needs word_ids()",
            field="data.tokenizer",
            fix="use a folder with a tokenizer.json (save the tokenizer with transformers to create one)",
        )
    return tokenizer


def special_token_layout(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special ids the tokenizer puts before and after a single sequence.

    Asked from the tokenizer itself (by encoding one word and reading `word_ids()`), so BERT
    (`[CLS] x [SEP]`), DeBERTa-v2 and any other layout come out right.

    Returns:
        (prefix ids, suffix ids).
    """
    encoding = tokenizer(["a"], is_split_into_words=True, add_special_tokens=True)
    word_ids = encoding.word_ids()
    words = [position for position, word in enumerate(word_ids) if word is not None]
    ids = encoding["input_ids"]
    return list(ids[: words[0]]), list(ids[words[-1] + 1 :])


def word_subword_ids(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[Sequence[str]]
) -> list[list[list[int]]]:
    """Subword ids of every word of every sentence, without special tokens.

    The tokenizer runs once per chunk of sentences (`is_split_into_words=True`) and `word_ids()`
    groups the subwords by word. A word the tokenizer turns into nothing (e.g. a lone control
    character) becomes the unknown token, so that it still gets a prediction.

    Args:
        tokenizer: A fast tokenizer.
        sentences: Words of each sentence.

    Returns:
        Per sentence, per word, its subword ids.

    Raises:
        ModelError: A word yields no subword and the tokenizer has no unknown token.
    """
    result: list[list[list[int]]] = []
    for begin in range(0, len(sentences), _ENCODE_CHUNK):
        chunk = [list(words) for words in sentences[begin : begin + _ENCODE_CHUNK]]
        encoding = tokenizer(chunk, is_split_into_words=True, add_special_tokens=False)
        for row, words in enumerate(chunk):
            grouped: list[list[int]] = [[] for _ in words]
            for token_id, word in zip(encoding["input_ids"][row], encoding.word_ids(row), strict=True):
                if word is not None:
                    grouped[word].append(token_id)
            for position, ids in enumerate(grouped):
                if not ids:
                    if tokenizer.unk_token_id is None:
                        raise ModelError(
                            f"the tokenizer turns word {words[position]!r} into no subword and has no unknown token",
                            field="data.tokenizer",
                            fix="remove or replace the word in the dataset, or use a tokenizer with an unknown token",
                        )
                    ids.append(tokenizer.unk_token_id)
            result.append(grouped)
    return result


def b_to_i_ids(label_names: Sequence[str]) -> dict[int, int]:
    """Label id of `B-X` -> label id of `I-X`, for labelling continuation subwords."""
    index = {label: position for position, label in enumerate(label_names)}
    mapping = {}
    for label, position in index.items():
        prefix, entity_type = split_tag(label)
        if prefix == "B" and f"I-{entity_type}" in index:
            mapping[position] = index[f"I-{entity_type}"]
    return mapping


@dataclass(frozen=True)
class EncodedWindow:
    """A window and the index of its sentence in the split it was cut from."""

    window: Window
    example_id: int


class WindowDataset(Dataset):
    """Map-style dataset over the encoded windows of one split.

    Args:
        windows: The encoded windows, in sentence order.
    """

    def __init__(self, windows: Sequence[EncodedWindow]) -> None:
        self.windows = list(windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> EncodedWindow:
        return self.windows[index]


class WindowCollator:
    """Pad a list of windows to the longest one and stack them into the batch dict.

    Args:
        pad_id: The tokenizer's padding id.
        token_type_ids: Whether to add an all-zero `token_type_ids` tensor (the backbone takes it).
    """

    def __init__(self, pad_id: int, token_type_ids: bool) -> None:
        self.pad_id = pad_id
        self.token_type_ids = token_type_ids

    def __call__(self, items: Sequence[EncodedWindow]) -> dict[str, torch.Tensor]:
        width = max(len(item.window.input_ids) for item in items)

        def pad(rows: list[Sequence[Any]], value: Any, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows], dtype=dtype)

        windows = [item.window for item in items]
        batch = {
            "input_ids": pad([w.input_ids for w in windows], self.pad_id, torch.long),
            "attention_mask": pad([[1] * len(w.input_ids) for w in windows], 0, torch.long),
            "word_index": pad([w.word_index for w in windows], NO_WORD, torch.long),
            "owned": pad([w.owned for w in windows], False, torch.bool),
            "example_id": torch.tensor([item.example_id for item in items], dtype=torch.long),
        }
        if self.token_type_ids:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        if all(w.labels is not None for w in windows):
            batch["labels"] = pad([w.labels for w in windows], IGNORE_INDEX, torch.long)
        return batch


class NerDataModule(L.LightningDataModule):
    """Training, validation, test and predict loaders over a canonical dataset folder.

    The folder is read once in `__init__` (so `label_names` is known before the model is built, the
    CLI links it into the model) and tokenized once per split in `setup`.

    Args:
        data_dir: Dataset folder (train.jsonl, validation.jsonl, optional test.jsonl and labels.json).
        tokenizer: Tokenizer to use: local folder, `pkg:` reference or hub name (linked from model.backbone).
        max_length: Most subwords per window, special tokens included; longer sentences are split.
        stride: Most subwords that consecutive windows of a long sentence share (context overlap).
        batch_size: Windows per training batch.
        eval_batch_size: Windows per validation/test/predict batch (default: batch_size).
        num_workers: DataLoader worker processes (0 loads in the main process).
        label_all_tokens: Label every subword of a word (a continuation of B-X as I-X) instead of the first only.
        combine_train_validation: Train on train + validation (final training); validation still evaluates validation.
        group_by_length: Batch training windows of similar length together (less padding).
        seed: Seed of the length-grouped training order.
    """

    def __init__(
        self,
        data_dir: str,
        tokenizer: str = "",
        max_length: int = 128,
        stride: int = 32,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        label_all_tokens: bool = False,
        combine_train_validation: bool = False,
        group_by_length: bool = True,
        seed: int = 42,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("max_length", max_length, 2),
            ("batch_size", batch_size, 1),
            ("stride", stride, 0),
        ):
            if value < least:
                raise ConfigError(
                    f"must be at least {least}, got {value}",
                    field=f"data.{name}",
                    fix=f"pass --data.{name} {least} or more (the tiny config uses {_EXAMPLE_VALUES[name]})",
                )
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ConfigError(
                f"must be at least 1, got {eval_batch_size}",
                field="data.eval_batch_size",
                fix="pass a positive number, or leave it out to use data.batch_size",
            )
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.stride = stride
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.label_all_tokens = label_all_tokens
        self.combine_train_validation = combine_train_validation
        self.group_by_length = group_by_length
        self.seed = seed
        self.dataset: DatasetFolder = load_dataset_folder(data_dir)
        #: Ordered label names (from labels.json, else derived from the splits); linked into the model.
        self.label_names: list[str] = list(self.dataset.labels)
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._encoded: dict[str, WindowDataset] = {}

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The fast tokenizer (loaded on first use)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def examples(self, split: str) -> list[Example]:
        """Sentences of a split as the loaders index them (`example_id` is the position in this list).

        Args:
            split: `train`, `validation` or `test`. With `combine_train_validation`, `train` is train
                followed by validation.
        """
        if split not in self.dataset.splits:
            raise DataError(
                f"the dataset folder has no {split!r} split",
                path=f"{self.dataset.path}/{SPLIT_FILES.get(split, split)}",
                fix=f"add {SPLIT_FILES.get(split, split)} to the dataset folder",
            )
        if split == TRAIN_SPLIT and self.combine_train_validation:
            return [*self.dataset.splits[TRAIN_SPLIT], *self.dataset.splits[VALIDATION_SPLIT]]
        return list(self.dataset.splits[split])

    def encoded(self, split: str) -> WindowDataset:
        """The windows of a split, tokenized on first use and cached."""
        if split not in self._encoded:
            self._encoded[split] = self._encode(self.examples(split))
        return self._encoded[split]

    def setup(self, stage: str | None = None) -> None:
        """Tokenize the splits `stage` needs (`fit`, `validate`, `test`, `predict`; None: all present)."""
        needs = {
            "fit": (TRAIN_SPLIT, VALIDATION_SPLIT),
            "validate": (VALIDATION_SPLIT,),
            "test": (TEST_SPLIT,),
            "predict": (TEST_SPLIT,),
        }
        splits = needs[stage] if stage is not None else tuple(self.dataset.splits)
        for split in splits:
            self.encoded(split)

    def train_dataloader(self) -> DataLoader:
        data = self.encoded(TRAIN_SPLIT)
        if self.group_by_length:
            lengths = [len(item.window.input_ids) for item in data.windows]
            sampler = LengthGroupedSampler(lengths, self.batch_size, seed=self.seed)
            return self._loader(data, self.batch_size, sampler=sampler)
        return self._loader(data, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.encoded(VALIDATION_SPLIT), self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.encoded(TEST_SPLIT), self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.encoded(TEST_SPLIT), self.eval_batch_size)

    def _loader(self, data: WindowDataset, batch_size: int, **kwargs: Any) -> DataLoader:
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        collate = WindowCollator(pad_id, "token_type_ids" in self.tokenizer.model_input_names)
        return DataLoader(
            data,
            batch_size=batch_size,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def _encode(self, examples: Sequence[Example]) -> WindowDataset:
        tokenizer = self.tokenizer
        prefix, suffix = special_token_layout(tokenizer)
        limit = tokenizer.model_max_length
        if limit < _TOKENIZER_LENGTH_SENTINEL and self.max_length > limit:
            raise ConfigError(
                f"max_length {self.max_length} exceeds the tokenizer's model_max_length {limit}",
                field="data.max_length",
                fix=f"use --data.max_length {limit} or less",
            )
        room = self.max_length - len(prefix) - len(suffix)
        if room < 1 or self.stride >= room:
            raise ConfigError(
                f"max_length {self.max_length} leaves {room} subwords per window after "
                f"{len(prefix) + len(suffix)} special tokens; stride {self.stride} must be smaller than that",
                field="data.stride",
                fix="raise data.max_length or lower data.stride",
            )
        label_ids = {label: position for position, label in enumerate(self.label_names)}
        b_to_i = b_to_i_ids(self.label_names) if self.label_all_tokens else None
        subwords = word_subword_ids(tokenizer, [example.tokens for example in examples])
        windows: list[EncodedWindow] = []
        for example_id, (example, words) in enumerate(zip(examples, subwords, strict=True)):
            tags = [label_ids[tag] for tag in example.tags]
            for window in make_windows(
                words,
                prefix,
                suffix,
                self.max_length,
                self.stride,
                tag_ids=tags,
                label_all_tokens=self.label_all_tokens,
                b_to_i=b_to_i,
            ):
                windows.append(EncodedWindow(window, example_id))
        return WindowDataset(windows)
