"""Acceptance 1, last part: a converted WNUT17 slice trains through the core CLI (one tiny step)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ner_lightning.data.convert import convert
from tests.conftest import REPO_ROOT


def _head(source: Path, target: Path, sentences: int) -> Path:
    blocks = source.read_text(encoding="utf-8").split("\n\n")[:sentences]
    target.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return target


@pytest.mark.slow
def test_converted_wnut17_slice_trains_one_step(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    wnut = shared_data / "wnut17"
    data = convert(
        {
            "train": _head(wnut / "wnut17train.conll", tmp_path / "train.conll", 32),
            "validation": _head(wnut / "emerging.dev.conll", tmp_path / "dev.conll", 16),
        },
        tmp_path / "wnut17-slice",
    ).folder
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    from ner_lightning.cli import cli_main

    out = tmp_path / "run"
    cli = cli_main(
        [
            "fit",
            "--config", "configs/train/base.yaml",
            "--config", "configs/train/tiny.yaml",
            "--data.data_dir", str(data),
            "--output_dir", str(out),
            "--trainer.max_steps", "1",
            "--trainer.max_epochs", "1",
            "--trainer.check_val_every_n_epoch", "1",
        ]
    )  # fmt: skip
    assert cli.trainer.global_step == 1
    assert cli.datamodule.label_names[0] == "O" and "B-person" in cli.datamodule.label_names
    assert (out / "checkpoints" / "last.ckpt").is_file()
