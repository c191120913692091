"""NerDataModule end to end on the toy dataset: batch contract, padding, windows, combined training data, errors."""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from ner_lightning.data.datamodule import NerDataModule
from ner_lightning.data.records import load_dataset_folder
from ner_lightning.errors import ConfigError, DataError, ModelError
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.training_data.conftest import TOY_DATASET

torch.set_num_threads(1)
BATCH_KEYS = {"input_ids", "attention_mask", "labels", "word_index", "owned", "example_id"}


def words_per_example(batches: list[dict[str, torch.Tensor]]) -> dict[int, dict[int, int]]:
    """example id -> {word index: gold label id} read at owned positions; fails if a word is owned twice."""
    seen: dict[int, dict[int, int]] = defaultdict(dict)
    for batch in batches:
        for row in range(batch["input_ids"].shape[0]):
            example = int(batch["example_id"][row])
            for position in torch.nonzero(batch["owned"][row]).flatten().tolist():
                word = int(batch["word_index"][row, position])
                assert word not in seen[example], f"example {example} word {word} owned twice"
                seen[example][word] = int(batch["labels"][row, position])
    return seen


def test_label_names_known_right_after_init_without_a_tokenizer() -> None:
    data = NerDataModule(str(TOY_DATASET))
    assert data.label_names == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@pytest.mark.parametrize("name", ["wordpiece", "unigram"])
def test_validation_batches_follow_the_contract(name: str, tokenizer_dirs: dict[str, Path]) -> None:
    data = NerDataModule(
        str(TOY_DATASET), tokenizer=str(tokenizer_dirs[name]), max_length=16, stride=4, batch_size=3
    )
    data.setup("fit")
    pad = data.tokenizer.pad_token_id
    batches = list(data.val_dataloader())
    for batch in batches:
        assert set(batch) >= BATCH_KEYS
        rows, width = batch["input_ids"].shape
        assert width <= 16
        for key in ("attention_mask", "labels", "word_index", "owned"):
            assert batch[key].shape == (rows, width)
        assert batch["owned"].dtype == torch.bool and batch["example_id"].shape == (rows,)
        lengths = batch["attention_mask"].sum(dim=1)
        assert int(lengths.max()) == width  # padded to the longest window in the batch, no further
        padding = batch["attention_mask"] == 0
        assert (batch["input_ids"][padding] == pad).all()
        assert (batch["labels"][padding] == -100).all()
        assert (batch["word_index"][padding] == -1).all()
        assert not batch["owned"][padding].any()
    # Every word of every validation sentence (one of them 58 words long) gets exactly one owned slot
    # carrying its gold label.
    examples = data.examples("validation")
    label_ids = {label: i for i, label in enumerate(data.label_names)}
    owned = words_per_example(batches)
    assert sorted(owned) == list(range(len(examples)))
    for example_id, example in enumerate(examples):
        assert owned[example_id] == {w: label_ids[tag] for w, tag in enumerate(example.tags)}
    long_id = max(range(len(examples)), key=lambda i: len(examples[i].tokens))
    windows = [item for item in data.encoded("validation").windows if item.example_id == long_id]
    assert len(windows) > 3


def test_combine_train_validation_trains_on_both(tokenizer_dirs: dict[str, Path]) -> None:
    folder = load_dataset_folder(TOY_DATASET)
    data = NerDataModule(
        str(TOY_DATASET),
        tokenizer=str(tokenizer_dirs["wordpiece"]),
        batch_size=4,
        combine_train_validation=True,
    )
    data.setup("fit")
    assert len(data.examples("train")) == len(folder.splits["train"]) + len(folder.splits["validation"])
    assert len(data.examples("validation")) == len(folder.splits["validation"])
    train_ids = {int(i) for batch in data.train_dataloader() for i in batch["example_id"]}
    assert train_ids == set(range(32))
    assert {int(i) for batch in data.val_dataloader() for i in batch["example_id"]} == set(range(8))


def test_length_grouped_training_order_is_seeded(tokenizer_dirs: dict[str, Path]) -> None:
    def order(seed: int) -> list[list[int]]:
        data = NerDataModule(
            str(TOY_DATASET),
            tokenizer=str(tokenizer_dirs["wordpiece"]),
            max_length=16,
            stride=4,
            batch_size=4,
            seed=seed,
        )
        data.setup("fit")
        return [batch["example_id"].tolist() for batch in data.train_dataloader()]

    first = order(7)
    assert first == order(7)
    assert first != order(8)
    assert sum(len(b) for b in first) == len(
        NerDataModule(
            str(TOY_DATASET), tokenizer=str(tokenizer_dirs["wordpiece"]), max_length=16, stride=4
        ).encoded("train")
    )


def test_label_all_tokens_labels_continuations_as_inside(tokenizer_dirs: dict[str, Path]) -> None:
    data = NerDataModule(str(TOY_DATASET), tokenizer=str(tokenizer_dirs["wordpiece"]), label_all_tokens=True)
    data.setup("validate")
    names = data.label_names
    checked = 0
    for item in data.encoded("validation").windows:
        window = item.window
        last = len(window.input_ids) - 1  # [SEP]
        for position, word in enumerate(window.word_index):
            if word < 0:
                continue
            tag = names[window.labels[position]]
            following = position + 1
            while following < last and window.word_index[following] == -1:
                assert names[window.labels[following]] == tag.replace("B-", "I-")
                checked += tag.startswith("B-")
                following += 1
    assert checked > 0, "some B- word of the fixture must be split into several subwords"


def test_test_and_predict_loaders_cover_the_test_split(tokenizer_dirs: dict[str, Path]) -> None:
    data = NerDataModule(str(TOY_DATASET), tokenizer=str(tokenizer_dirs["unigram"]), max_length=16, stride=2)
    data.setup("predict")
    predicted = {int(i) for batch in data.predict_dataloader() for i in batch["example_id"]}
    assert predicted == set(range(6))
    assert len(words_per_example(list(data.test_dataloader()))[4]) == 45


@pytest.mark.parametrize("family", sorted(TINY_BACKBONES))
def test_tiny_backbone_tokenizers(family: str) -> None:
    folder = TINY_BACKBONES[family]
    data = NerDataModule(str(TOY_DATASET), tokenizer=str(folder), max_length=16, stride=4, batch_size=8)
    data.setup("validate")
    batches = list(data.val_dataloader())
    assert ("token_type_ids" in batches[0]) == ("token_type_ids" in data.tokenizer.model_input_names)
    assert sum(len(words) for words in words_per_example(batches).values()) == sum(
        len(e.tokens) for e in data.examples("validation")
    )


def test_missing_test_split(tmp_path: Path, tokenizer_dirs: dict[str, Path]) -> None:
    shutil.copytree(TOY_DATASET, tmp_path / "toy")
    (tmp_path / "toy" / "test.jsonl").unlink()
    data = NerDataModule(str(tmp_path / "toy"), tokenizer=str(tokenizer_dirs["wordpiece"]))
    with pytest.raises(DataError, match=r"test\.jsonl: the dataset folder has no 'test' split"):
        data.setup("test")


def test_tokenizer_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[data.tokenizer\]: no tokenizer given"):
        NerDataModule(str(TOY_DATASET)).setup("fit")
    with pytest.raises(ModelError, match="offline") as raised:
        NerDataModule(str(TOY_DATASET), tokenizer=str(tmp_path / "no-such-model")).setup("fit")
    assert "local folder" in (raised.value.fix or "")


def test_settings_errors(tokenizer_dirs: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"\[data.stride\]"):
        NerDataModule(
            str(TOY_DATASET), tokenizer=str(tokenizer_dirs["wordpiece"]), max_length=8, stride=6
        ).setup("fit")
    with pytest.raises(ConfigError, match=r"\[data.batch_size\]"):
        NerDataModule(str(TOY_DATASET), batch_size=0)
    with pytest.raises(DataError, match="dataset folder does not exist"):
        NerDataModule("/nonexistent/folder")
