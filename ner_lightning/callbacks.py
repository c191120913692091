"""Training callbacks that the command line can switch on and off."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping

from ner_lightning.contract import PRIMARY_METRIC, PRIMARY_METRIC_GOAL


class ToggleableEarlyStopping(EarlyStopping):
    """Early stopping on the primary metric that `--early_stopping.enabled false` switches off.

    Final training runs a fixed number of epochs (no validation set to stop on), sweeps and dry
    runs stop early; one callback class serves both so the configs differ by one flag.

    Args:
        enabled: Stop training when `monitor` has not improved for `patience` validation epochs.
        monitor: Metric to watch (the primary metric `val_f1` by default).
        mode: "max" when a larger value is better, "min" otherwise.
        patience: Validation epochs without improvement before stopping.
        min_delta: Smallest change that counts as an improvement.
    """

    def __init__(
        self,
        enabled: bool = True,
        monitor: str = PRIMARY_METRIC,
        mode: str = "max" if PRIMARY_METRIC_GOAL == "maximize" else "min",
        patience: int = 3,
        min_delta: float = 0.0,
    ) -> None:
        super().__init__(monitor=monitor, mode=mode, patience=patience, min_delta=min_delta)
        self.enabled = enabled

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            super().on_validation_end(trainer, pl_module)
