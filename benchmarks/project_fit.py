"""This project's side of the benchmarks: `NerDataModule` + `TokenClassifier` + a Lightning `Trainer`.

The run mirrors `benchmarks.hf_baseline.train_baseline` (same settings, same report fields), with
the project's own data path: windows instead of truncation, dynamic padding and length-grouped
batches. Logging, checkpointing, progress bars and in-training validation are off, so the loop
timed is the training loop itself; tokens are counted from each batch's attention mask.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch

from benchmarks.hf_baseline import BaselineSettings
from benchmarks.measure import Stopwatch, TokenCounter, peak_rss_mib, set_threads
from benchmarks.scoring import entity_scores
from ner_lightning.contract import TEST_SPLIT, VALIDATION_SPLIT
from ner_lightning.data.datamodule import NerDataModule
from ner_lightning.model.module import TokenClassifier


class ThroughputCallback(L.Callback):
    """Counts real and padded tokens of every training batch and times the training loop.

    The clock runs from the start of the first training epoch (before its first batch is loaded) to
    the end of the last optimizer step, like the baseline's loop. Each step's own time (batch start
    to batch end: forward, backward, optimizer) and real tokens are kept too, so a step that
    compiled (torch.compile) can be told from the steady ones.
    """

    def __init__(self) -> None:
        self.tokens = TokenCounter()
        self.watch = Stopwatch()
        self._last_end: float | None = None
        self._started: float | None = None
        self._step_started: float | None = None
        #: Seconds and real tokens of every training step, in order.
        self.step_seconds: list[float] = []
        self.step_tokens: list[int] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.tokens.add(batch["attention_mask"])
        self.step_tokens.append(int(batch["attention_mask"].sum()))
        self._step_started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._last_end = time.perf_counter()
        if self._step_started is not None:
            self.step_seconds.append(self._last_end - self._step_started)

    @property
    def seconds(self) -> float:
        """Seconds from the first epoch start to the last batch end."""
        if self._started is None or self._last_end is None:
            return 0.0
        return self._last_end - self._started


def build_model(
    backbone: str, label_names: list[str], use_crf: bool, **hyperparameters: Any
) -> TokenClassifier:
    """The project's model, as the CLI builds it."""
    return TokenClassifier(backbone=backbone, label_names=label_names, use_crf=use_crf, **hyperparameters)


def loss(model: TokenClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss of a batch (what `training_step` computes, without logging)."""
    return model.loss(model(batch), batch)


def decode(model: TokenClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Predicted label ids at the word positions of a batch (argmax, or Viterbi with the CRF)."""
    return model.decode(model(batch), batch)


def _trainer(
    callbacks: list[L.Callback], settings: BaselineSettings, precision: str = "32-true"
) -> L.Trainer:
    limits: dict[str, Any] = (
        {"max_steps": settings.max_steps} if settings.max_steps else {"max_epochs": settings.epochs}
    )
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,  # type: ignore[arg-type]
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
        **limits,
    )


def predict_split(
    trainer: L.Trainer, model: TokenClassifier, data: NerDataModule, split: str
) -> list[list[str]]:
    """Word-level tags of every sentence of a split, through `predict_step` + `merge_predictions`."""
    loaders = {VALIDATION_SPLIT: data.val_dataloader, TEST_SPLIT: data.test_dataloader}
    data.encoded(split)
    loader = loaders[split]()
    merged = TokenClassifier.merge_predictions(trainer.predict(model, dataloaders=loader))
    return [merged.get(index, []) for index in range(len(data.examples(split)))]


def train_project(
    data_dir: str | Path,
    settings: BaselineSettings,
    use_crf: bool = False,
    evaluate: tuple[str, ...] = (VALIDATION_SPLIT,),
    group_by_length: bool = True,
    lr_schedule: str = "linear",
    precision: str = "32-true",
    compile_backbone: bool = False,
    fused_adamw: bool = True,
) -> dict[str, Any]:
    """Fine-tune through the project's data module, model and a Lightning Trainer; score the splits.

    Args:
        data_dir: Canonical dataset folder.
        settings: The same settings the baseline gets (`max_length` is the window size here).
        use_crf: Train and decode with the CRF.
        evaluate: Splits to score after training (empty for throughput only).
        group_by_length: Length-grouped batches (the project's default) or random ones.
        lr_schedule: `model.lr_schedule` (after the warm-up): `linear`, `cosine` or `constant`.
        precision: Lightning `trainer.precision` (`32-true`, or `bf16-mixed` for bf16 autocast).
        compile_backbone: Wrap the encoder in `torch.compile` (default inductor backend).
        fused_adamw: The model's fused AdamW (its default); false: PyTorch's per-parameter loop,
            the model's optimizer before the epoch profile (kept comparable for older results).

    Returns:
        The report fields of `benchmarks.hf_baseline.train_baseline`, plus the per-step timings of
        `ThroughputCallback` (`step_seconds`, `step_tokens`).
    """
    started = time.perf_counter()
    set_threads(settings.threads)
    L.seed_everything(settings.seed, verbose=False)
    data = NerDataModule(
        data_dir=str(data_dir),
        tokenizer=settings.backbone,
        max_length=settings.max_length,
        batch_size=settings.batch_size,
        group_by_length=group_by_length,
        seed=settings.seed,
    )
    model = build_model(
        settings.backbone,
        data.label_names,
        use_crf,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_ratio=settings.warmup_ratio,
        lr_schedule=lr_schedule,
    )
    if not fused_adamw:
        model._fused_optimizer = lambda: False  # type: ignore[method-assign]
    if compile_backbone:
        model.backbone = torch.compile(model.backbone)
    meter = ThroughputCallback()
    trainer = _trainer([meter], settings, precision)
    trainer.fit(model, datamodule=data)
    train_seconds = time.perf_counter() - started
    seconds = meter.seconds
    report: dict[str, Any] = {
        "side": "project",
        "settings": {
            **asdict(settings),
            "use_crf": use_crf,
            "group_by_length": group_by_length,
            "lr_schedule": lr_schedule,
            "precision": precision,
            "compile_backbone": compile_backbone,
            "fused_adamw": fused_adamw,
        },
        "steps": trainer.global_step,
        "real_tokens": meter.tokens.real,
        "padded_tokens": meter.tokens.padded,
        "padding_ratio": meter.tokens.padding_ratio,
        "measured_seconds": seconds,
        "tokens_per_second": meter.tokens.real / seconds if seconds else 0.0,
        "train_wall_seconds": train_seconds,
        "step_seconds": meter.step_seconds,
        "step_tokens": meter.step_tokens,
    }
    for split in evaluate:
        gold = [list(example.tags) for example in data.examples(split)]
        report[split] = entity_scores(gold, predict_split(trainer, model, data, split))
    report["peak_rss_mib"] = peak_rss_mib()
    return report


def run(
    data_dir: str,
    settings: dict[str, Any],
    evaluate: list[str] = (VALIDATION_SPLIT,),  # type: ignore[assignment]
    use_crf: bool = False,
    lr_schedule: str = "linear",
    precision: str = "32-true",
    compile_backbone: bool = False,
    fused_adamw: bool = True,
) -> dict[str, Any]:
    """`train_project` with JSON arguments, the entry point `benchmarks.worker` calls."""
    return train_project(
        data_dir,
        BaselineSettings(**settings),
        use_crf,
        tuple(evaluate),
        lr_schedule=lr_schedule,
        precision=precision,
        compile_backbone=compile_backbone,
        fused_adamw=fused_adamw,
    )
