"""Training callbacks that the command line can switch on and off."""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping

from ner_lightning.contract import PRIMARY_METRIC, PRIMARY_METRIC_GOAL
from ner_lightning.errors import ConfigError


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


class EpochSeed(L.Callback):
    """Reseed python, numpy and torch at the first batch of every training epoch from the run's seed and the epoch.

    A checkpoint holds weights, optimizer, schedule and counters, not the global random state that
    dropout draws from; reseeding per epoch makes epoch `e` draw the same masks whether the run got
    there uninterrupted or resumed from the `last.ckpt` of epoch `e - 1`, so a resumed final
    training ends with the uninterrupted run's weights. The seed is set at the first batch, after
    the epoch's data loader is built (building one draws from the global generator, and a resumed
    run builds its first one at another moment). Without `seed_everything` nothing is done.

    Args:
        enabled: Reseed at every epoch's first batch (the run's seed is `seed_everything`'s).
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        base = os.environ.get("PL_GLOBAL_SEED")
        if not self.enabled or base is None or batch_idx != 0:
            return
        seed = (int(base) * 1_000_003 + trainer.current_epoch * 7919 + trainer.global_rank) % 2**32
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def _duration(seconds: float) -> str:
    """`1h02m`, `3m05s` or `42s`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressLog(L.Callback):
    """Plain progress lines every `interval_s` seconds, for logs written to a file (job logs).

    A progress bar draws only on a terminal; written to a file, a run would say nothing until it
    ends. Each line: epoch, optimizer step / total, mean loss since the last line, subword tokens/s,
    elapsed time, ETA, and the last `val_f1` once known. Validation reports its batches too.

    Args:
        mode: `auto` (only when stdout is not a terminal), `always` or `never`.
        interval_s: Seconds between two lines.
    """

    def __init__(self, mode: Literal["auto", "always", "never"] = "auto", interval_s: float = 20.0) -> None:
        super().__init__()
        if interval_s <= 0:
            raise ConfigError(f"must be > 0, got {interval_s}", field="progress_log.interval_s")
        self.mode = mode
        self.interval_s = interval_s
        self._start = self._last = 0.0
        self._tokens = 0
        self._losses: list[float] = []

    @property
    def active(self) -> bool:
        """Whether lines are written (`auto`: stdout is not a terminal)."""
        if self.mode == "auto":
            return not sys.stdout.isatty()
        return self.mode == "always"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._tokens, self._losses = 0, []
        if self.active and trainer.is_global_zero:
            total = int(trainer.estimated_stepping_batches)
            self._write(f"training: {trainer.max_epochs} epoch(s), {total} optimizer steps")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None:
            self._tokens += int(mask.sum())
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            self._losses.append(float(loss))
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._write(self._train_line(trainer, now))
            self._last, self._tokens, self._losses = now, 0, []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self.active or not trainer.is_global_zero or trainer.sanity_checking:
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            total = trainer.num_val_batches[dataloader_idx] if trainer.num_val_batches else "?"
            self._write(f"epoch {trainer.current_epoch + 1}: validating batch {batch_idx + 1}/{total}")
            self._last = now

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.active and trainer.is_global_zero:
            elapsed = time.monotonic() - self._start
            self._write(
                f"training done: {trainer.global_step} steps in {_duration(elapsed)}{self._val_f1(trainer)}"
            )

    def _train_line(self, trainer: L.Trainer, now: float) -> str:
        total = max(int(trainer.estimated_stepping_batches), 1)
        step = trainer.global_step
        elapsed = now - self._start
        eta = elapsed / step * (total - step) if step else float("nan")
        loss = sum(self._losses) / len(self._losses) if self._losses else float("nan")
        rate = self._tokens / max(now - self._last, 1e-9)
        return (
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {step}/{total} "
            f"({100 * step / total:.0f}%) loss {loss:.4f} tokens/s {rate:.0f} "
            f"elapsed {_duration(elapsed)} ETA {_duration(eta) if eta == eta else '?'}{self._val_f1(trainer)}"
        )

    @staticmethod
    def _val_f1(trainer: L.Trainer) -> str:
        value = trainer.callback_metrics.get(PRIMARY_METRIC)
        return f" {PRIMARY_METRIC} {float(value):.4f}" if value is not None else ""

    @staticmethod
    def _write(line: str) -> None:
        print(f"[progress {time.strftime('%H:%M:%S')}] {line}", flush=True)
