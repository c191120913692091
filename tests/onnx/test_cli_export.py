"""`python -m ner_lightning fit --onnx_export.enabled true` writes `<output_dir>/onnx` from the best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from ner_lightning.cli import cli_main
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    ONNX_MODEL_FILE,
)
from ner_lightning.onnx.predictor import OnnxTagger
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.fixtures.tiny_runs import tiny_fit_args


def _fit(output: Path, *extra: str) -> None:
    cli_main(
        tiny_fit_args(
            output,
            "--trainer.max_epochs",
            "1",
            "--trainer.check_val_every_n_epoch",
            "1",
            *extra,
            backbone=TINY_BACKBONES["distilbert"],
        )
    )


def test_cli_exports_the_best_checkpoint_when_enabled(tmp_path: Path) -> None:
    _fit(tmp_path / "on", "--onnx_export.enabled", "true")
    folder = tmp_path / "on" / ONNX_DIR
    assert (folder / ONNX_MODEL_FILE).is_file() and (
        tmp_path / "on" / CHECKPOINT_DIR / BEST_CHECKPOINT
    ).is_file()
    assert json.loads((folder / MODEL_METADATA_FILE).read_text())["source_checkpoint"] == BEST_CHECKPOINT
    assert len(OnnxTagger(folder).tag_words([["Nokia", "moved", "to", "Tokyo", "."]])[0]) == 5


def test_cli_does_not_export_by_default(tmp_path: Path) -> None:
    _fit(tmp_path / "off")
    assert not (tmp_path / "off" / ONNX_DIR).exists()
