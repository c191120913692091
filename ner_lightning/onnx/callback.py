"""`OnnxExport`: a Lightning callback that exports the best checkpoint to ONNX at the end of fit."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

from ner_lightning.errors import ConfigError

log = logging.getLogger(__name__)


class OnnxExport(L.Callback):
    """Export the best checkpoint's model to an ONNX model folder when training ends (rank 0 only).

    Args:
        enabled: Export at the end of fit (`--onnx_export.enabled true`).
        output_dir: Model folder to write; the CLI links it to `<output_dir>/onnx`.
        opset: ONNX opset version.
    """

    def __init__(self, enabled: bool = False, output_dir: str = "", opset: int = 17) -> None:
        super().__init__()
        self.enabled = enabled
        self.output_dir = output_dir
        self.opset = opset
        #: The folder written by the last export (None before one).
        self.exported: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Fail before training, not after it, when the destination is missing.
        if self.enabled and not self.output_dir:
            raise ConfigError(
                "ONNX export is enabled but has no output folder",
                field="onnx_export.output_dir",
                fix="pass --output_dir (linked to <output_dir>/onnx) or --onnx_export.output_dir <folder>",
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        if trainer.is_global_zero:
            self.exported = self.export(trainer, pl_module)
        trainer.strategy.barrier("onnx_export")

    def export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path:
        """Load the best checkpoint (or keep the current weights when there is none) and export it."""
        from ner_lightning.onnx.export import export_onnx

        best = (
            getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        )
        if best and Path(best).is_file():
            model = type(pl_module).load_checkpoint(best)
            source = Path(best).name
        else:
            log.warning("no best checkpoint was saved; exporting the weights at the end of training")
            model, source = pl_module, "end of training"
        device, training = pl_module.device, pl_module.training
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "tokenizer"):
            raise ConfigError(
                "ONNX export needs the NerDataModule (tokenizer, max_length, stride)",
                field="onnx_export.enabled",
                fix="train through `python -m ner_lightning fit` with the ner_lightning data module",
            )
        try:
            folder = export_onnx(
                model,
                datamodule.tokenizer,
                self.output_dir,
                max_length=datamodule.max_length,
                stride=datamodule.stride,
                label_all_tokens=getattr(datamodule, "label_all_tokens", False),
                opset=self.opset,
                data_dir=getattr(datamodule, "data_dir", None),
                extra_metadata={"source_checkpoint": source},
            )
        finally:
            # The export moves the model to CPU in eval mode; give the trainer back its module as it was.
            pl_module.to(device).train(training)
        log.info("exported the ONNX model folder %s from %s", folder, source)
        return folder
