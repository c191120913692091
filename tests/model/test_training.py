"""Training through `cli_main(["fit", ...])`: each tiny family overfits the toy set, with and without CRF."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ner_lightning.cli import cli_main
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT
from ner_lightning.model.module import TokenClassifier
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.fixtures.tiny_runs import TRAIN_CONFIGS, tiny_fit_args


def fit_args(output_dir: Path, backbone: Path, crf: bool, *extra: str) -> list[str]:
    if crf:
        crf_args = ("--model.crf_learning_rate", "0.05")
        return tiny_fit_args(
            output_dir, *crf_args, *extra, backbone=backbone, overlays=[TRAIN_CONFIGS / "crf.yaml"]
        )
    return tiny_fit_args(output_dir, *extra, backbone=backbone)


@pytest.mark.parametrize("crf", [False, True], ids=["softmax", "crf"])
@pytest.mark.parametrize("family", sorted(TINY_BACKBONES))
def test_tiny_backbone_overfits_toy_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str, crf: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = cli_main(fit_args(tmp_path / "out", TINY_BACKBONES[family], crf))
    # Bounded: tiny.yaml trains 40 epochs of 4 batches (160 steps) and validates every 5 epochs.
    assert cli.trainer.global_step <= 160
    assert cli.trainer.checkpoint_callback.best_model_score.item() == 1.0
    assert cli.model.last_scores["val"].f1 == 1.0
    checkpoints = tmp_path / "out" / CHECKPOINT_DIR
    assert (checkpoints / BEST_CHECKPOINT).is_file()
    assert (checkpoints / LAST_CHECKPOINT).is_file()
    assert (tmp_path / "out" / "config.yaml").is_file()
    assert (cli.model.crf is not None) == crf
    if crf:
        # The constrained decode never emits an invalid IOB2 sequence, whatever was learned.
        assert bool(cli.model.crf.allowed_transitions[0, 2]) is False  # O -> I-LOC


def test_checkpoint_restores_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = cli_main(fit_args(tmp_path / "out", TINY_BACKBONES["bert"], True, "--trainer.max_epochs", "5"))
    best = tmp_path / "out" / CHECKPOINT_DIR / BEST_CHECKPOINT
    checkpoint = torch.load(best, weights_only=True)  # safe loading works on our checkpoints
    meta = checkpoint["ner_lightning"]
    assert meta["format_version"] == 2
    assert meta["label_names"] == cli.datamodule.label_names
    assert meta["head"]["class_path"] == "ner_lightning.model.heads.CRFHead"
    assert meta["backbone"] == str(TINY_BACKBONES["bert"])
    assert meta["backbone_config"]["model_type"] == "bert"

    restored = TokenClassifier.load_checkpoint(best)
    trained = cli.model.eval()
    batch = next(iter(cli.datamodule.val_dataloader()))
    with torch.no_grad():
        assert torch.equal(restored.decode(restored(batch), batch), trained.decode(trained(batch), batch))

    # Resume from last.ckpt for 5 more epochs.
    last = tmp_path / "out" / CHECKPOINT_DIR / LAST_CHECKPOINT
    resumed = cli_main(
        fit_args(
            tmp_path / "out2",
            TINY_BACKBONES["bert"],
            True,
            "--trainer.max_epochs",
            "10",
            "--ckpt_path",
            str(last),
        )
    )
    assert resumed.trainer.current_epoch == 10
    assert resumed.trainer.global_step == 2 * cli.trainer.global_step


def test_early_stopping_is_toggled_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # A vanishing learning rate (0 is refused) never improves val_f1: enabled early stopping stops
    # after `patience` checks.
    common = [
        "--model.learning_rate",
        "1e-30",
        "--model.crf_learning_rate",
        "1e-30",
        "--trainer.check_val_every_n_epoch",
        "1",
    ]
    on = cli_main(
        fit_args(
            tmp_path / "a",
            TINY_BACKBONES["bert"],
            False,
            *common,
            "--early_stopping.enabled",
            "true",
            "--early_stopping.patience",
            "1",
            "--trainer.max_epochs",
            "6",
        )
    )
    assert on.trainer.current_epoch < 6
    off = cli_main(
        fit_args(tmp_path / "b", TINY_BACKBONES["bert"], False, *common, "--trainer.max_epochs", "3")
    )
    assert off.trainer.current_epoch == 3
    # Validation ran every epoch; after training, fit scored the test split (the trainer's
    # callback_metrics then hold the test metrics).
    assert set(off.model.last_scores) == {"val", "test"}
    assert "test_f1" in off.trainer.callback_metrics
