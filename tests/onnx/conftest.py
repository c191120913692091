"""Tiny trained models for the ONNX tests: real Lightning checkpoints of the three backbone families."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, ONNX_DIR
from tests.conftest import FIXTURES
from tests.fixtures.tiny_backbones import TINY_BACKBONES

TOY_DATASET = FIXTURES / "toy_dataset"
#: Small windows, so that test sentences are split and the stride path is exercised.
MAX_LENGTH, STRIDE = 12, 3


def train_tiny(
    output_dir: Path, family: str, use_crf: bool, export: bool = True, max_steps: int = 30
) -> Path:
    """Train a tiny model for a couple of steps the real way (Trainer + NerDataModule + ModelCheckpoint).

    Returns the training output folder (`checkpoints/best.ckpt`, and `onnx/` when `export`).
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    from ner_lightning.data.datamodule import NerDataModule
    from ner_lightning.model.module import TokenClassifier
    from ner_lightning.onnx.callback import OnnxExport

    torch.set_num_threads(1)
    L.seed_everything(0, verbose=False)
    backbone = str(TINY_BACKBONES[family])
    data = NerDataModule(
        str(TOY_DATASET), tokenizer=backbone, max_length=MAX_LENGTH, stride=STRIDE, batch_size=8
    )
    # A large learning rate so a couple of steps move the weights away from the random init.
    model = TokenClassifier(backbone, data.label_names, use_crf=use_crf, learning_rate=1e-2, warmup_ratio=0.0)
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        callbacks=[
            ModelCheckpoint(dirpath=output_dir / CHECKPOINT_DIR, filename=Path(BEST_CHECKPOINT).stem),
            OnnxExport(enabled=export, output_dir=str(output_dir / ONNX_DIR)),
        ],
    )
    trainer.fit(model, datamodule=data)
    return output_dir


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], Path]:
    """Training output folders of every family, with and without CRF (built once per session)."""
    root = tmp_path_factory.mktemp("trained")
    return {
        (family, crf): train_tiny(root / f"{family}-{'crf' if crf else 'softmax'}", family, crf)
        for family in TINY_BACKBONES
        for crf in (False, True)
    }


@pytest.fixture
def bert_crf_output(trained_models: dict[tuple[str, bool], Path], tmp_path: Path) -> Path:
    """A private copy of the BERT+CRF training output, free to corrupt."""
    copy = tmp_path / "bert-crf"
    shutil.copytree(trained_models[("bert", True)], copy)
    return copy
