"""Heads as parts: old checkpoints and `use_crf` configs keep working, bad heads are refused with the
available ones listed, an export the predictor could not decode is refused, and `test --ckpt_path`
alone rebuilds the model the training run built (issue 15, acceptance 2 (loading) and 5)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

from ner_lightning.cli import cli_main
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR
from ner_lightning.data.datamodule import load_tokenizer
from ner_lightning.errors import ExportError, ModelError
from ner_lightning.model.heads import CRFHead, SoftmaxHead, TokenHead
from ner_lightning.model.module import TokenClassifier
from ner_lightning.onnx.export import export_onnx
from ner_lightning.onnx.smoke import TorchTagger
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.fixtures.tiny_runs import TOY_DATASET, TRAIN_CONFIGS, tiny_fit_args

FIXTURES = Path(__file__).parent / "fixtures"
LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
BERT = str(TINY_BACKBONES["bert"])


@pytest.mark.parametrize(("name", "head"), [("softmax", SoftmaxHead), ("crf", CRFHead)])
def test_format_1_checkpoints_load_and_tag_as_the_old_code_did(name: str, head: type) -> None:
    """Checkpoints written before heads were parts (fixtures/README.md) load, and give the old tags."""
    model = TokenClassifier.load_checkpoint(FIXTURES / f"format1_{name}.ckpt")
    assert type(model.head) is head
    expected = json.loads((FIXTURES / "format1_expected_tags.json").read_text(encoding="utf-8"))
    tagger = TorchTagger(model, load_tokenizer(BERT), max_length=64, stride=16)
    assert tagger.tag_words(expected["sentences"], model.label_names) == expected["tags"][name]


def test_use_crf_configs_map_to_the_crf_head(tmp_path: Path) -> None:
    base = ["--config", str(TRAIN_CONFIGS / "base.yaml"), "--config", str(TRAIN_CONFIGS / "tiny.yaml")]
    base += ["--trainer.logger", "false", "--output_dir", str(tmp_path)]
    old = cli_main([*base, "--model.use_crf", "true", "--model.crf_learning_rate", "0.02"], run=False)
    new = cli_main(
        [*base, "--model.head", "CRFHead", "--model.head.init_args.transition_learning_rate", "0.02"],
        run=False,
    )
    overlay = cli_main([*base, "--config", str(TRAIN_CONFIGS / "crf.yaml")], run=False)
    assert (
        old.model.head.spec()
        == new.model.head.spec()
        == {
            "class_path": "ner_lightning.model.heads.CRFHead",
            "init_args": {"transition_learning_rate": 0.02, "constrained": True},
        }
    )
    assert isinstance(overlay.model.head, CRFHead)
    assert isinstance(cli_main(base, run=False).model.head, SoftmaxHead)
    with pytest.raises(ModelError, match=r"use_crf=true contradicts model\.head=SoftmaxHead"):
        TokenClassifier(BERT, LABELS, head="softmax", use_crf=True)
    # Old launchers always pass `--model.use_crf false`; a head given beside it wins.
    assert isinstance(TokenClassifier(BERT, LABELS, head="crf", use_crf=False).head, CRFHead)


class NotAHead(nn.Module):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


class Unfinished(TokenHead):
    """Forgets to implement build and forward."""


class WrongWidth(TokenHead):
    def build(self, hidden_size: int, label_names: Sequence[str]) -> None:
        self.label_names = list(label_names)
        self.linear = nn.Linear(hidden_size, 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden_states)


class ForgetsItsArguments(SoftmaxHead):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()


class UnknownDecoder(SoftmaxHead):
    decoder_name = "beam_search"


class CrfDecoderWithoutScores(SoftmaxHead):
    """Names the CRF decoder but gives it no scores: the predictor could not decode it."""

    decoder_name = "crf_viterbi"


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ("nosuch", "head 'nosuch' does not exist; available heads: softmax (ner_lightning.model.heads.SoftmaxHead), crf"),
        ("no.such.Head", "head 'no.such.Head' does not exist; available heads: softmax"),
        (f"{__name__}.NotAHead", "NotAHead is not a head: it does not subclass ner_lightning.model.heads.TokenHead"),
        (f"{__name__}.Unfinished", "head Unfinished does not implement the TokenHead interface"),
        (f"{__name__}.WrongWidth", "head WrongWidth returns (1, 3, 2) for hidden states of shape (1, 3, 32)"),
        (f"{__name__}.ForgetsItsArguments", "does not keep its init argument 'scale' as an attribute"),
        (f"{__name__}.UnknownDecoder", "names decoder 'beam_search', which is not registered; available decoders: argmax, crf_viterbi"),
        ({"class_path": "crf", "init_args": {"beam": 3}}, "cannot build head crf with {'beam': 3}"),
    ],
)  # fmt: skip
def test_bad_heads_are_refused_by_name_with_the_available_heads(head: object, message: str) -> None:
    with pytest.raises(ModelError) as error:
        TokenClassifier(BERT, LABELS, head=head)
    assert message in error.value.message
    assert error.value.field.startswith("model.head")


def test_a_bad_class_path_in_a_config_lists_the_heads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "head.yaml"
    overlay.write_text(
        "model:\n  head:\n    class_path: no.such.Head\n    init_args: {x: 1}\n", encoding="utf-8"
    )
    with pytest.raises(SystemExit):
        cli_main(["--config", str(TRAIN_CONFIGS / "base.yaml"), "--config", str(overlay)], run=False)
    error = capsys.readouterr().err
    assert (
        'key "model.head"' in error
        and "Available heads: softmax (ner_lightning.model.heads.SoftmaxHead)" in error
    )


def test_export_refuses_a_head_the_predictor_cannot_decode(tmp_path: Path) -> None:
    model = TokenClassifier(BERT, LABELS, head=CrfDecoderWithoutScores())
    with pytest.raises(
        ExportError, match="the predictor cannot decode head CrfDecoderWithoutScores"
    ) as error:
        export_onnx(model, load_tokenizer(BERT), tmp_path / "onnx", max_length=16, stride=4)
    assert "crf section is incomplete" in error.value.message
    assert not (tmp_path / "onnx").exists()


@pytest.mark.slow
def test_test_with_only_the_checkpoint_scores_the_model_training_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fit = cli_main(
        tiny_fit_args(
            tmp_path / "out",
            "--trainer.max_epochs", "5",
            "--data.max_length", "24",
            "--data.stride", "6",
            overlays=[TRAIN_CONFIGS / "crf.yaml"],
        )
    )  # fmt: skip
    trained = fit.model.last_scores["test"]  # fit scored the test split after training
    best = tmp_path / "out" / CHECKPOINT_DIR / BEST_CHECKPOINT
    test = cli_main(
        [
            "test",
            "--ckpt_path",
            str(best),
            "--data.data_dir",
            str(TOY_DATASET),
            "--output_dir",
            str(tmp_path / "t"),
        ]
    )
    assert test.model.head.spec() == fit.model.head.spec()
    assert (test.datamodule.max_length, test.datamodule.stride) == (24, 6)
    assert test.model.last_scores["test"] == trained
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "mlruns").exists()


def test_test_with_only_a_format_1_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the fixture's paths are repository-relative
    test = cli_main(
        ["test", "--ckpt_path", str(FIXTURES / "format1_crf.ckpt"), "--data.data_dir", str(TOY_DATASET),
         "--output_dir", str(tmp_path), "--trainer.logger", "false"]
    )  # fmt: skip
    assert isinstance(test.model.head, CRFHead)
    assert test.datamodule.max_length == 64
    assert 0.0 < test.model.last_scores["test"].f1 <= 1.0


def test_testing_a_checkpoint_with_another_head_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    with pytest.raises(ModelError) as error:
        cli_main(
            ["test", "--ckpt_path", str(FIXTURES / "format1_softmax.ckpt"), "--data.data_dir", str(TOY_DATASET),
             "--model.head", "crf", "--output_dir", str(tmp_path), "--trainer.logger", "false"]
        )  # fmt: skip
    assert "the checkpoint has head ner_lightning.model.heads.SoftmaxHead" in error.value.message
    assert "this model has head ner_lightning.model.heads.CRFHead" in error.value.message
