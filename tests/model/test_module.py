"""TokenClassifier: one prediction per word for long sentences, safe checkpoint loading, backbone errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import lightning as L
import pytest
import torch

from ner_lightning.data.datamodule import NerDataModule
from ner_lightning.errors import ModelError
from ner_lightning.model.backbone import load_backbone
from ner_lightning.model.module import TokenClassifier
from tests.conftest import REPO_ROOT
from tests.fixtures.tiny_backbones import TINY_BACKBONES

TOY = REPO_ROOT / "tests" / "fixtures" / "toy_dataset"


class CaptureWords(L.Callback):
    """Keeps the word-level sequences the validation metric saw (before the module resets it)."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: TokenClassifier) -> None:
        self.gold, self.predicted = pl_module.val_metric.sequences()


@pytest.mark.parametrize("use_crf", [False, True], ids=["softmax", "crf"])
def test_long_sentences_get_one_prediction_per_word(tiny_backbone: Path, use_crf: bool) -> None:
    data = NerDataModule(str(TOY), tokenizer=str(tiny_backbone), max_length=16, stride=4, batch_size=4)
    model = TokenClassifier(str(tiny_backbone), data.label_names, use_crf=use_crf)
    examples = data.examples("validation")
    assert max(len(example.tokens) for example in examples) > 16  # split into several windows
    capture = CaptureWords()
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[capture],
    )
    trainer.validate(model, datamodule=data)
    assert capture.gold == [list(example.tags) for example in examples]
    assert [len(tags) for tags in capture.predicted] == [len(example.tokens) for example in examples]

    predictions = TokenClassifier.merge_predictions(trainer.predict(model, datamodule=data))
    test_examples = data.examples("test")
    assert sorted(predictions) == list(range(len(test_examples)))
    assert [len(predictions[i]) for i in range(len(test_examples))] == [len(e.tokens) for e in test_examples]
    assert all(tag in data.label_names for tags in predictions.values() for tag in tags)


def test_checkpoint_from_another_project_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}, "epoch": 3}, plain)
    with pytest.raises(ModelError, match="not a ner-lightning checkpoint"):
        TokenClassifier.load_checkpoint(plain)


class Payload:
    """An arbitrary object: unpickling it would run code a weights-only load must refuse."""

    def __reduce__(self) -> tuple:
        return (print, ("unsafe code ran",))


def test_checkpoint_needing_arbitrary_unpickling_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save(
        {"state_dict": {}, "ner_lightning": {"format_version": 1}, "x": Payload()},
        unsafe,
        pickle_module=pickle,
    )
    with pytest.raises(ModelError, match="safely"):
        TokenClassifier.load_checkpoint(unsafe)
    assert "unsafe code ran" not in capsys.readouterr().out


def test_missing_checkpoint_and_unknown_backbone_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        TokenClassifier.load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(ModelError, match="local folder") as error:
        load_backbone(str(tmp_path / "no-such-backbone"))
    assert error.value.field == "model.backbone"


def test_backbone_is_in_train_mode_without_pooler() -> None:
    backbone = load_backbone(str(TINY_BACKBONES["bert"]))
    assert backbone.training
    assert backbone.pooler is None


def test_emissions_shape_and_label_list_required() -> None:
    model = TokenClassifier(str(TINY_BACKBONES["distilbert"]), ["O", "B-X", "I-X"])
    ids = torch.tensor([[2, 10, 11, 3]])
    out = model.emissions(
        ids, torch.ones_like(ids), torch.zeros_like(ids)
    )  # token types ignored by DistilBERT
    assert out.shape == (1, 4, 3)
    with pytest.raises(ModelError, match="label list is empty"):
        TokenClassifier(str(TINY_BACKBONES["distilbert"]), [])
