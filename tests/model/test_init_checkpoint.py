"""`--model.init_checkpoint`: a new run starts from a checkpoint's weights, with a fresh optimizer.

A tiny BERT parent is trained once on the toy dataset; children initialised from its best.ckpt
start exactly from its weights (a zero learning rate keeps them there), count steps from 0, and a
`--ckpt_path` resume wins over the init checkpoint without reading it. Bad checkpoints fail with a
ModelError that names the file and what differs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ner_lightning.cli import cli_main
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT
from ner_lightning.errors import ModelError
from ner_lightning.model.module import TokenClassifier
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.fixtures.tiny_runs import tiny_fit_args

#: The toy training split is 4 batches of 8 windows per epoch.
STEPS_PER_EPOCH = 4
PARENT_EPOCHS = 5


@dataclass(frozen=True)
class Parent:
    best: Path
    last: Path
    global_step: int
    best_score: float
    labels: list[str]


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parent]:
    """One tiny parent run shared by the module (5 epochs, validated at the end)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("parent")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        cli = cli_main(tiny_fit_args(root / "out", "--trainer.max_epochs", str(PARENT_EPOCHS)))
    checkpoints = root / "out" / CHECKPOINT_DIR
    yield Parent(
        best=checkpoints / BEST_CHECKPOINT,
        last=checkpoints / LAST_CHECKPOINT,
        global_step=cli.trainer.global_step,
        best_score=float(cli.trainer.checkpoint_callback.best_model_score),
        labels=list(cli.datamodule.label_names),
    )


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_weights(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert state.keys() == expected.keys()
    different = [name for name in expected if not torch.equal(state[name].cpu(), expected[name])]
    assert different == []


def test_a_new_fit_starts_from_the_checkpoint_weights_with_a_fresh_optimizer(
    parent: Parent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parent.global_step == PARENT_EPOCHS * STEPS_PER_EPOCH
    monkeypatch.chdir(tmp_path)
    # Learning rate 1e-30 (0 is refused): float32 weights cannot move, so they can only be the
    # parent's if init_checkpoint was loaded.
    child = cli_main(
        tiny_fit_args(
            tmp_path / "child",
            "--model.init_checkpoint",
            str(parent.best),
            "--model.learning_rate",
            "1e-30",
            "--trainer.max_epochs",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
        )
    )
    _assert_same_weights(child.model.state_dict(), _state(parent.best))
    # The first validation of the child scores exactly what the parent's best checkpoint scored.
    assert child.model.last_scores["val"].f1 == pytest.approx(parent.best_score)
    # Fresh trainer state: one epoch of steps from 0, and AdamW moments counted from 0.
    assert (child.trainer.current_epoch, child.trainer.global_step) == (1, STEPS_PER_EPOCH)
    optimizer_steps = {float(s["step"]) for s in child.trainer.optimizers[0].state.values()}
    assert optimizer_steps == {float(STEPS_PER_EPOCH)}
    assert child.model.hparams.init_checkpoint == str(parent.best)

    # A model without init_checkpoint starts from the (random) pretrained head instead.
    fresh = TokenClassifier(str(TINY_BACKBONES["bert"]), parent.labels)
    fresh.setup("fit")
    assert not torch.equal(
        fresh.head.state_dict()["linear.weight"], _state(parent.best)["head.linear.weight"]
    )


def test_resume_wins_and_does_not_read_the_init_checkpoint(
    parent: Parent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # A child initialised from a copy of the parent, interrupted after one epoch...
    init = tmp_path / "init.ckpt"
    shutil.copy(parent.best, init)
    cli_main(
        tiny_fit_args(tmp_path / "child", "--model.init_checkpoint", str(init), "--trainer.max_epochs", "1")
    )
    child_last = tmp_path / "child" / CHECKPOINT_DIR / LAST_CHECKPOINT
    child_state = _state(child_last)
    # ...whose init checkpoint is gone (another machine) when it resumes: the resumed state wins.
    init.unlink()
    # max_epochs already reached: the resumed weights are exactly the child's, nothing trains.
    resumed = cli_main(
        tiny_fit_args(
            tmp_path / "resumed",
            "--model.init_checkpoint",
            str(init),
            "--trainer.max_epochs",
            "1",
            "--ckpt_path",
            str(child_last),
        )
    )
    assert resumed.trainer.global_step == STEPS_PER_EPOCH
    assert resumed.model.hparams.init_checkpoint == str(init)  # provenance kept, file never read
    _assert_same_weights(resumed.model.state_dict(), child_state)
    # The child's checkpoints restore without the file it was initialised from.
    restored = TokenClassifier.load_checkpoint(child_last)
    restored.setup("fit")
    _assert_same_weights(restored.state_dict(), child_state)


def test_a_restored_checkpoint_wins_over_init_checkpoint_in_python(parent: Parent, tmp_path: Path) -> None:
    model = TokenClassifier(
        str(TINY_BACKBONES["bert"]), parent.labels, init_checkpoint=str(tmp_path / "gone.ckpt")
    )
    model.on_load_checkpoint(torch.load(parent.last, weights_only=True))  # what resume calls
    model.setup("fit")  # does not read the missing file


def _model(labels: list[str], init: Path, backbone: str = "bert", use_crf: bool = False) -> TokenClassifier:
    return TokenClassifier(str(TINY_BACKBONES[backbone]), labels, use_crf=use_crf, init_checkpoint=str(init))


def _setup_error(model: TokenClassifier) -> ModelError:
    with pytest.raises(ModelError) as caught:
        model.setup("fit")
    return caught.value


def test_missing_file(parent: Parent, tmp_path: Path) -> None:
    error = _setup_error(_model(parent.labels, tmp_path / "nope.ckpt"))
    assert "does not exist" in str(error)
    assert error.path == str(tmp_path / "nope.ckpt") and error.field == "model.init_checkpoint"


def test_missing_file_fails_the_cli_before_training(
    parent: Parent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        cli_main(tiny_fit_args(tmp_path / "out", "--model.init_checkpoint", str(tmp_path / "nope.ckpt")))
    assert not (tmp_path / "out" / CHECKPOINT_DIR / LAST_CHECKPOINT).exists()


def test_another_projects_checkpoint(parent: Parent, tmp_path: Path) -> None:
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": _state(parent.best), "epoch": 3, "hyper_parameters": {}}, other)
    error = _setup_error(_model(parent.labels, other))
    assert "not a ner-lightning checkpoint" in str(error) and error.path == str(other)
    assert "python -m ner_lightning fit" in error.fix


def test_a_pickle_that_needs_unsafe_loading(parent: Parent, tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "ner_lightning": {"hook": Path("x")}}, unsafe)
    assert "cannot be loaded safely" in str(_setup_error(_model(parent.labels, unsafe)))


def test_label_mismatch_names_both_label_lists(parent: Parent) -> None:
    labels = ["O", "B-MISC", "I-MISC"]
    error = _setup_error(_model(labels, parent.best))
    assert str(parent.labels) in error.message and str(labels) in error.message
    assert error.path == str(parent.best) and "labels.json" in error.fix


def test_head_mismatch(parent: Parent) -> None:
    error = _setup_error(_model(parent.labels, parent.best, use_crf=True))
    assert "it has head ner_lightning.model.heads.SoftmaxHead" in error.message
    assert "this model has head ner_lightning.model.heads.CRFHead" in error.message
    assert "--model.head ner_lightning.model.heads.SoftmaxHead" in error.fix


def test_backbone_architecture_mismatch_names_what_differs(parent: Parent) -> None:
    error = _setup_error(_model(parent.labels, parent.best, backbone="distilbert"))
    assert "backbone architecture" in error.message
    assert "model_type: checkpoint 'bert' vs model 'distilbert'" in error.message
    assert "--model.backbone" in error.fix
