"""A run interrupted at an epoch end and resumed from its `last.ckpt` ends with the very weights of the
uninterrupted run (issue 14, acceptance 2: an interrupted final training registers the same model).

Dropout draws from the global RNG, which a checkpoint does not hold: without a per-epoch seed
(`ner_lightning.callbacks.EpochSeed`) the resumed epoch draws other dropout masks (every tensor
differed).
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from ner_lightning.cli import cli_main
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, EFFECTIVE_CONFIG_FILE, LAST_CHECKPOINT
from tests.fixtures.tiny_runs import tiny_fit_args

#: Two epochs validated every epoch (each writes last.ckpt), dropout on, no test or export after fit.
ARGS = (
    "--trainer.max_epochs",
    "2",
    "--trainer.check_val_every_n_epoch",
    "1",
    "--model.dropout",
    "0.2",
    "--test_after_fit",
    "false",
)


class StopAfterFirstEpoch(L.Callback):
    """Ends fit after epoch 0 (its last.ckpt written): an interruption at an epoch end."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def test_resumed_from_an_epoch_end_checkpoint_the_weights_are_the_uninterrupted_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    whole = cli_main(tiny_fit_args(tmp_path / "whole", *ARGS))
    assert whole.trainer.current_epoch == 2
    interrupted = cli_main(
        tiny_fit_args(
            tmp_path / "cut",
            *ARGS,
            "--trainer.callbacks+=tests.model.test_resume_determinism.StopAfterFirstEpoch",
        )
    )
    assert interrupted.trainer.current_epoch == 1
    cut = tmp_path / "cut" / CHECKPOINT_DIR / LAST_CHECKPOINT
    resumed = cli_main(tiny_fit_args(tmp_path / "resumed", *ARGS, "--ckpt_path", str(cut)))
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == whole.trainer.global_step
    # The weights at the end of fit (no test after fit reloads the best checkpoint). Not last.ckpt:
    # Lightning 2.6 rewrites it only when val_f1 improved, and a resumed run, in another folder,
    # starts without the best score.
    expected, found = whole.model.state_dict(), resumed.model.state_dict()
    assert expected.keys() == found.keys()
    differing = [name for name in expected if not torch.equal(expected[name], found[name])]
    assert not differing, f"{len(differing)} of {len(expected)} tensors differ, e.g. {differing[:3]}"


def test_training_on_train_and_validation_keeps_the_last_epoch_so_a_resumed_run_converts_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Final training (`--data.combine_train_validation true`): `best.ckpt` is the last epoch, in the
    uninterrupted run and in one resumed from the first epoch's `last.ckpt` in another folder alike,
    and the effective config says the checkpoint monitored nothing."""
    monkeypatch.chdir(tmp_path)
    final = (*ARGS, "--data.combine_train_validation", "true")
    whole = cli_main(tiny_fit_args(tmp_path / "whole", *final))
    cli_main(
        tiny_fit_args(
            tmp_path / "cut",
            *final,
            "--trainer.callbacks+=tests.model.test_resume_determinism.StopAfterFirstEpoch",
        )
    )
    cut = tmp_path / "cut" / CHECKPOINT_DIR / LAST_CHECKPOINT
    cli_main(tiny_fit_args(tmp_path / "resumed", *final, "--ckpt_path", str(cut)))
    best = {
        run: torch.load(tmp_path / run / CHECKPOINT_DIR / BEST_CHECKPOINT, weights_only=True)
        for run in ("whole", "resumed")
    }
    assert [best[run]["epoch"] for run in best] == [whole.trainer.current_epoch - 1] * 2
    expected, found = best["whole"]["state_dict"], best["resumed"]["state_dict"]
    differing = [name for name in expected if not torch.equal(expected[name], found[name])]
    assert not differing, f"{len(differing)} of {len(expected)} tensors differ, e.g. {differing[:3]}"
    effective = json.loads((tmp_path / "whole" / CHECKPOINT_DIR / EFFECTIVE_CONFIG_FILE).read_text())
    assert effective["checkpoint"]["monitor"] is None
