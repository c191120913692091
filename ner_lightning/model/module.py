"""`TokenClassifier`: the LightningModule that owns loss, metrics, logging and optimisation.

The network pieces are plain modules: the backbone (`backbone.py`) and a head (`heads.py`: softmax,
IOB2-constrained CRF, or any `TokenHead`), which owns its scores, loss, decoder and optimizer
groups; decoding goes through `ner_lightning.decoding` like the ONNX predictor's. Batches follow the contract in
docs/architecture.md; evaluation reads predictions only at owned words, so a sentence split into
several windows still gets exactly one prediction per word.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch import nn
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from ner_lightning.contract import PRIMARY_METRIC, TEST_F1, TRAIN_LOSS, VAL_PRECISION, VAL_RECALL
from ner_lightning.decoding import decode_words
from ner_lightning.errors import ModelError
from ner_lightning.metrics import EntityF1, EntityScores
from ner_lightning.model.backbone import load_backbone
from ner_lightning.model.heads import IGNORE_INDEX, CRFHead, TokenHead, resolve_head, split_decay
from ner_lightning.validation import check_model_arguments, checkpoint_load_problem

#: Key of the self-description every ner-lightning checkpoint carries.
CHECKPOINT_KEY = "ner_lightning"
#: 2: the head is recorded as `head` (`{"class_path", "init_args"}`); 1: `use_crf` (read and mapped).
CHECKPOINT_FORMAT_VERSION = 2
SUPPORTED_CHECKPOINT_FORMATS = (1, 2)
#: Learning-rate schedules after the warm-up (`model.lr_schedule`).
LR_SCHEDULES = {
    "linear": get_linear_schedule_with_warmup,
    "cosine": get_cosine_schedule_with_warmup,
    "constant": get_constant_schedule_with_warmup,
}

# Set while restoring a checkpoint: the backbone is rebuilt from this config instead of loaded.
_RESTORE_BACKBONE_CONFIG: ContextVar[dict[str, Any] | None] = ContextVar(
    "restore_backbone_config", default=None
)


def _metric_name_part(entity_type: str) -> str:
    """An entity type as it may appear inside an MLflow metric name."""
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", entity_type)


class TokenClassifier(L.LightningModule):
    """Transformer encoder + a head (softmax, CRF or your own `TokenHead`) for IOB2 named-entity tagging.

    Args:
        backbone: Pretrained encoder: local folder, `pkg:<package>/<folder>` or hub name (also the tokenizer).
        label_names: Ordered label list, `O` first (linked from the data module; never set in YAML).
        head: The head: a name (`softmax`, `crf`), a class path, or `{class_path, init_args}` of a
            `ner_lightning.model.heads.TokenHead` subclass. Default: `softmax` (`crf` with use_crf).
        use_crf: Deprecated (old configs): true means `head: crf`; false means `head: softmax` unless a
            head is given.
        dropout: Dropout on the encoder output before the head.
        learning_rate: Peak AdamW learning rate of the backbone and the head.
        crf_learning_rate: Deprecated alias of the CRF head's `transition_learning_rate` (overrides it when set).
        weight_decay: AdamW weight decay (not applied to biases, LayerNorm weights and CRF scores).
        lr_schedule: Learning rate after the warm-up: `linear` decay to 0, `cosine` decay to 0, or `constant`.
        warmup_ratio: Fraction of the training steps spent warming the learning rate up linearly from 0.
        warmup_steps: Warm-up length in optimizer steps; when set it replaces warmup_ratio.
        strict_iob2: Score entities in strict IOB2 mode instead of conlleval-compatible.
        init_checkpoint: A ner-lightning checkpoint (`.ckpt`) whose model weights initialise this
            model before it first runs (e.g. continue from a previous final training with a lower
            learning rate). Weights only: the optimizer, learning-rate schedule, epoch and step
            counters start fresh. Its label list, head and backbone architecture must equal
            this model's. Loaded (safely, weights only) in `setup`, so building the model never reads
            it; a checkpoint the trainer restores (`--ckpt_path` resume, `load_from_checkpoint`)
            always wins over it.
    """

    def __init__(
        self,
        backbone: str,
        label_names: list[str],
        head: TokenHead | str | None = None,
        use_crf: bool | None = None,
        dropout: float = 0.1,
        learning_rate: float = 5e-5,
        crf_learning_rate: float | None = None,
        weight_decay: float = 0.01,
        lr_schedule: Literal["linear", "cosine", "constant"] = "linear",
        warmup_ratio: float = 0.1,
        warmup_steps: int | None = None,
        strict_iob2: bool = False,
        init_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        if not label_names:
            raise ModelError(
                "the label list is empty",
                field="model.label_names",
                fix="it is linked from data.label_names; check the dataset folder's labels.json and splits",
            )
        if not 0.0 <= warmup_ratio < 1.0:
            raise ModelError(f"must be in [0, 1), got {warmup_ratio}", field="model.warmup_ratio")
        check_model_arguments(label_names, dropout, learning_rate, crf_learning_rate, weight_decay)
        if warmup_steps is not None and warmup_steps < 0:
            raise ModelError(f"must be >= 0, got {warmup_steps}", field="model.warmup_steps")
        if lr_schedule not in LR_SCHEDULES:
            raise ModelError(
                f"unknown schedule {lr_schedule!r}",
                field="model.lr_schedule",
                fix=f"use one of {', '.join(LR_SCHEDULES)}",
            )
        self.save_hyperparameters(ignore=["head", "use_crf"])
        self.label_names = list(label_names)
        self.backbone = load_backbone(backbone, _RESTORE_BACKBONE_CONFIG.get())
        self._backbone_takes_token_types = (
            "token_type_ids" in inspect.signature(self.backbone.forward).parameters
        )
        self.dropout = nn.Dropout(dropout)
        self.head = build_head(
            head, use_crf, crf_learning_rate, self.backbone.config.hidden_size, self.label_names
        )
        # Recorded resolved (in the checkpoint and in the hyperparameters the logger records), so
        # checkpoints and `test --ckpt_path` rebuild exactly this head.
        self.hparams["head"] = self.head.spec()
        self._hparams_initial["head"] = self.head.spec()
        self.val_metric = EntityF1(self.label_names, strict=strict_iob2)
        self.test_metric = EntityF1(self.label_names, strict=strict_iob2)
        #: Scores of the last finished validation / test epoch (None before the first).
        self.last_scores: dict[str, EntityScores] = {}
        # True until init_checkpoint is applied or superseded by a restored checkpoint.
        self._init_checkpoint_pending = init_checkpoint is not None

    # --- network ---------------------------------------------------------------------------------
    def emissions(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-subword label scores `[B, T, num_labels]` (the part exported to ONNX).

        Args:
            input_ids: `[B, T]` subword ids.
            attention_mask: `[B, T]` 1 at real subwords, 0 at padding.
            token_type_ids: `[B, T]` segment ids, for backbones that take them.
        """
        inputs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._backbone_takes_token_types:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**inputs).last_hidden_state
        return self.head(self.dropout(hidden))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Emissions of a batch dict."""
        return self.emissions(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    @property
    def crf(self) -> nn.Module | None:
        """The CRF layer of a CRF head, else None."""
        return self.head.crf if isinstance(self.head, CRFHead) else None

    def loss(self, emissions: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's loss of a batch."""
        return self.head.loss(emissions, batch["labels"], batch["word_index"] >= 0)

    def decode(self, emissions: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted label id at every word position `[B, T]` (-1 elsewhere)."""
        return self.decode_words(emissions, batch["word_index"] >= 0)

    @torch.no_grad()
    def decode_words(self, emissions: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """Decode the first-subword positions `word_mask` with the head's decoder (the predictor's code).

        Args:
            emissions: `[B, T, L]` head scores.
            word_mask: `[B, T]` bool, True at the first subword of each word.

        Returns:
            `[B, T]` label ids at word positions, -1 elsewhere (on the scores' device).
        """
        ids = decode_words(
            emissions.detach().float().cpu().numpy(), word_mask.cpu().numpy(), self.head.decoder()
        )
        return torch.from_numpy(ids).to(emissions.device)

    # --- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch), batch)
        self.log(
            TRAIN_LOSS,
            loss,
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            batch_size=batch["input_ids"].size(0),
        )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metric, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric, "test")

    def predict_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> list[dict]:
        """Word-level tags of the owned words: one `{"example_id", "word_index": [...], "tags": [...]}` per window.

        `merge_predictions` turns the outputs of all batches into one tag list per example.
        """
        predictions = self.decode(self(batch), batch)
        result = []
        for row in range(predictions.size(0)):
            owned = batch["owned"][row]
            result.append(
                {
                    "example_id": int(batch["example_id"][row]),
                    "word_index": batch["word_index"][row][owned].tolist(),
                    "tags": [self.label_names[i] for i in predictions[row][owned].tolist()],
                }
            )
        return result

    @staticmethod
    def merge_predictions(outputs: list[list[dict]]) -> dict[int, list[str]]:
        """Merge `predict_step` outputs (e.g. `trainer.predict(...)`) into example id -> tags in word order."""
        words: dict[int, dict[int, str]] = {}
        for batch in outputs:
            for window in batch:
                target = words.setdefault(window["example_id"], {})
                for index, tag in zip(window["word_index"], window["tags"], strict=True):
                    target.setdefault(index, tag)
        return {example: [tags[i] for i in sorted(tags)] for example, tags in sorted(words.items())}

    def _evaluate(self, batch: dict[str, torch.Tensor], metric: EntityF1, prefix: str) -> None:
        emissions = self(batch)
        size = batch["input_ids"].size(0)
        if "labels" not in batch:
            raise ModelError(
                f"the {prefix} batches carry no gold labels",
                field="labels",
                fix="evaluate on a split with ner_tags, or use predict",
            )
        self.log(f"{prefix}_loss", self.loss(emissions, batch), on_step=False, on_epoch=True, batch_size=size)
        predictions = self.decode(emissions, batch)
        owned = batch["owned"].bool() & (batch["labels"] != IGNORE_INDEX)
        example_ids = batch["example_id"][:, None].expand_as(owned)
        metric.update(
            example_ids[owned], batch["word_index"][owned], predictions[owned], batch["labels"][owned]
        )

    def on_validation_epoch_end(self) -> None:
        self._log_scores(self.val_metric, "val")

    def on_test_epoch_end(self) -> None:
        self._log_scores(self.test_metric, "test")

    def _log_scores(self, metric: EntityF1, prefix: str) -> None:
        # compute() gathers every rank's words first, so these values are already global.
        scores = metric.compute()
        metric.reset()
        self.last_scores[prefix] = scores
        names = {
            "val": (PRIMARY_METRIC, VAL_PRECISION, VAL_RECALL),
            "test": (TEST_F1, "test_precision", "test_recall"),
        }[prefix]
        values = {names[0]: scores.f1, names[1]: scores.precision, names[2]: scores.recall}
        for entity_type, score in scores.per_type.items():
            values[f"{prefix}_f1_{_metric_name_part(entity_type)}"] = score.f1
        for name, value in values.items():
            self.log(name, float(value), prog_bar=name in (PRIMARY_METRIC, TEST_F1), sync_dist=False)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            print(f"\n{prefix} entity scores (epoch {self.current_epoch}):\n{scores.table()}\n", flush=True)

    # --- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on biases/LayerNorm; the head's own groups) with warm-up then `lr_schedule`, per step."""
        decay, no_decay = split_decay(list(self.backbone.named_parameters()))
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            *self.head.parameter_groups(self.hparams.weight_decay),
        ]
        optimizer = torch.optim.AdamW(
            _merge_groups(groups), lr=self.hparams.learning_rate, fused=self._fused_optimizer()
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = self.hparams.get("warmup_steps")
        warmup = int(total * self.hparams.warmup_ratio) if warmup is None else min(int(warmup), total)
        schedule = LR_SCHEDULES[self.hparams.get("lr_schedule", "linear")]
        if schedule is get_constant_schedule_with_warmup:
            scheduler = schedule(optimizer, warmup)
        else:
            scheduler = schedule(optimizer, warmup, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _fused_optimizer(self) -> bool:
        """Whether AdamW runs as PyTorch's fused kernel: on CPU and CUDA, except under fp16 loss scaling.

        The fused kernel is the same AdamW update in one pass over all parameters; on one CPU thread
        it updates MiniLM-L6 (22.6M parameters) about 4-5x faster than the default per-parameter
        loop, whose update was 29 % of a training epoch (docs/benchmarks.md, epoch profile).
        Lightning does not clip the gradients of a fused optimizer under fp16 loss scaling (the
        kernel unscales internally), so a run with a gradient scaler (`16-mixed` on GPU) keeps the loop.
        """
        devices = {parameter.device.type for parameter in self.parameters()}
        scaler = getattr(getattr(self.trainer, "precision_plugin", None), "scaler", None)
        return devices <= {"cpu", "cuda"} and scaler is None

    # --- checkpoints -----------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Load `init_checkpoint`'s weights before the first fit/validate/test/predict of this model.

        Lightning restores a `--ckpt_path` checkpoint after `setup`, so a resumed state overwrites
        these weights; the training CLI also calls `supersede_init_checkpoint` when it resumes, so
        the file is then not even read (it may live on another machine).
        """
        if self._init_checkpoint_pending:
            self.load_init_checkpoint(self.hparams.init_checkpoint)
        self._init_checkpoint_pending = False

    def supersede_init_checkpoint(self) -> None:
        """Do not load `init_checkpoint`: the weights will come from a checkpoint the trainer restores."""
        self._init_checkpoint_pending = False

    def load_init_checkpoint(self, path: str | Path) -> None:
        """Copy a compatible ner-lightning checkpoint's model weights into this model (weights only).

        Args:
            path: A `.ckpt` file written by ner-lightning training.

        Raises:
            ModelError: The file is missing, cannot be loaded safely, is not a ner-lightning
                checkpoint, or its labels, head or backbone architecture differ from this model's.
        """
        path = Path(path)
        checkpoint = _read_checkpoint(path, "cpu", field="model.init_checkpoint")
        meta = _checkpoint_meta(checkpoint, str(path))
        drop = "or drop --model.init_checkpoint to train from the pretrained backbone"
        if list(meta["label_names"]) != self.label_names:
            raise ModelError(
                f"cannot initialise from this checkpoint: it was trained on labels {list(meta['label_names'])}, "
                f"this model has {self.label_names}",
                path=path,
                field="model.init_checkpoint",
                fix=f"use a checkpoint trained on the same label set (the dataset's labels.json), {drop}",
            )
        theirs, ours = meta["head"]["class_path"], self.head.spec()["class_path"]
        if theirs != ours:
            raise ModelError(
                f"cannot initialise from this checkpoint: it has head {theirs}, this model has head {ours}",
                path=path,
                field="model.init_checkpoint",
                fix=f"set --model.head {theirs} to match the checkpoint, {drop}",
            )
        differences = _architecture_differences(meta["backbone_config"], self.backbone.config.to_dict())
        if differences:
            listed = ", ".join(
                f"{key}: checkpoint {theirs!r} vs model {ours!r}" for key, theirs, ours in differences
            )
            raise ModelError(
                f"cannot initialise from this checkpoint: its backbone architecture ({meta['backbone']}) differs "
                f"from this model's ({self.hparams.backbone}): {listed}",
                path=path,
                field="model.init_checkpoint",
                fix=f"set --model.backbone to the backbone the checkpoint was trained from, {drop}",
            )
        try:
            self.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as error:  # missing/unexpected keys or shape mismatches
            raise ModelError(
                f"cannot initialise from this checkpoint: its weights do not fit this model: {error}",
                path=path,
                field="model.init_checkpoint",
                fix=f"use a checkpoint of the same backbone, labels and head, {drop}",
            ) from error

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "label_names": list(self.label_names),
            "backbone": self.hparams.backbone,
            "backbone_config": self.backbone.config.to_dict(),
            "head": self.head.spec(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Restored weights (resume, load_from_checkpoint) always win over init_checkpoint.
        self._init_checkpoint_pending = False
        meta = _checkpoint_meta(checkpoint, "checkpoint")
        if list(meta["label_names"]) != self.label_names:
            raise ModelError(
                f"the checkpoint was trained on labels {meta['label_names']}, the data has {self.label_names}",
                field="label_names",
                fix="resume with the dataset the checkpoint was trained on (or its labels.json)",
            )
        theirs, ours = meta["head"]["class_path"], self.head.spec()["class_path"]
        if theirs != ours:
            raise ModelError(
                f"the checkpoint has head {theirs}, this model has head {ours}",
                field="model.head",
                fix=f"set --model.head {theirs} (or drop --config so the checkpoint's own settings apply)",
            )

    @classmethod
    def load_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> TokenClassifier:
        """Restore a trained model from a ner-lightning checkpoint file, with safe (weights-only) loading.

        The backbone is rebuilt from the config stored in the checkpoint, so the pretrained
        backbone files are not needed.

        Args:
            path: A `.ckpt` file written by ner-lightning training.
            map_location: Device to load the tensors onto.

        Raises:
            ModelError: The file is missing, needs unsafe unpickling, or is not a ner-lightning checkpoint.
        """
        path = Path(path)
        checkpoint = _read_checkpoint(path, map_location)
        meta = _checkpoint_meta(checkpoint, str(path))
        accepted = inspect.signature(cls.__init__).parameters
        # Lightning adds bookkeeping entries (e.g. `_instantiator`) that are not init arguments.
        hyper_parameters = {
            k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k in accepted
        }
        hyper_parameters.update(
            backbone=meta["backbone"], label_names=list(meta["label_names"]), head=meta["head"], use_crf=None
        )
        # The weights come from this file; the one it was initialised from may be long gone.
        hyper_parameters.pop("init_checkpoint", None)
        hyper_parameters.pop("crf_learning_rate", None)
        token = _RESTORE_BACKBONE_CONFIG.set(dict(meta["backbone_config"]))
        try:
            model = cls(**hyper_parameters)
        finally:
            _RESTORE_BACKBONE_CONFIG.reset(token)
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
        return model


def _merge_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge parameter groups with equal settings, in first-seen order, dropping empty ones.

    Backbone and head weights then share the `decay` and `no_decay` groups, which keeps the group
    layout (and so `--ckpt_path` resumes) of checkpoints written before heads were parts.
    """
    merged: dict[tuple, dict[str, Any]] = {}
    for group in groups:
        settings = tuple(sorted((k, v) for k, v in group.items() if k != "params"))
        target = merged.setdefault(settings, {**group, "params": []})
        target["params"] = [*target["params"], *group["params"]]
    return [group for group in merged.values() if group["params"]]


def build_head(
    head: TokenHead | str | Mapping[str, Any] | None,
    use_crf: bool | None,
    crf_learning_rate: float | None,
    hidden_size: int,
    label_names: list[str],
) -> TokenHead:
    """Resolve, build and check a head: its scores must be `[B, T, num_labels]` and its decoder must decode them.

    Raises:
        ModelError: The head is unknown, does not implement `TokenHead`, or its outputs do not fit.
    """
    resolved = resolve_head(head, use_crf)
    if crf_learning_rate is not None and isinstance(resolved, CRFHead):
        resolved.transition_learning_rate = crf_learning_rate
    name = type(resolved).__qualname__
    fix = "implement build/forward as ner_lightning.model.heads.TokenHead documents (see docs/heads.md)"
    try:
        resolved.build(hidden_size, label_names)
        with torch.no_grad():
            scores = resolved(torch.zeros(1, 3, hidden_size))
    except NotImplementedError as error:
        raise ModelError(
            f"head {name} does not implement the TokenHead interface", field="model.head", fix=fix
        ) from error
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != (1, 3, len(label_names)):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ModelError(
            f"head {name} returns {shape} for hidden states of shape (1, 3, {hidden_size}); "
            f"a head returns one score per label: (1, 3, {len(label_names)})",
            field="model.head",
            fix=fix,
        )
    resolved.spec()  # a head that cannot describe itself is refused here, not at the first checkpoint
    return resolved


def _read_checkpoint(
    path: Path, map_location: str | torch.device, field: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint file safely (weights only), or raise a ModelError saying why not."""
    if not path.is_file():
        raise ModelError(
            "checkpoint file does not exist",
            path=path,
            field=field,
            fix="check the path (e.g. <output_dir>/checkpoints/best.ckpt)",
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError by cause
        raise ModelError(
            f"not a ner-lightning checkpoint: it cannot be loaded safely (weights only): {checkpoint_load_problem(error)}",
            path=path,
            field=field,
            fix="use a checkpoint written by `python -m ner_lightning fit`; never load untrusted pickles",
        ) from error


#: Backbone config keys that change the network's shapes or computation (BERT-, DistilBERT- and
#: DeBERTa-style names); dropout rates, names and dtypes may differ between parent and child.
_ARCHITECTURE_KEYS = (
    "model_type",
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "position_embedding_type",
    "dim",
    "n_layers",
    "n_heads",
    "hidden_dim",
    "activation",
    "sinusoidal_pos_embds",
    "relative_attention",
    "position_biased_input",
    "pos_att_type",
    "max_relative_positions",
    "position_buckets",
    "share_att_key",
    "embedding_size",
)


def _architecture_differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(key, checkpoint value, model value)` for every architecture key whose values differ."""
    return [
        (key, theirs.get(key), ours.get(key))
        for key in _ARCHITECTURE_KEYS
        if (key in theirs or key in ours) and theirs.get(key) != ours.get(key)
    ]


def _checkpoint_meta(checkpoint: Any, where: str) -> dict[str, Any]:
    """The `ner_lightning` section of a checkpoint, or a ModelError saying why it is not one."""
    meta = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    fix = "use a checkpoint written by `python -m ner_lightning fit` (it carries a 'ner_lightning' section)"
    if not isinstance(meta, dict) or "state_dict" not in checkpoint:
        raise ModelError("not a ner-lightning checkpoint (no 'ner_lightning' section)", path=where, fix=fix)
    version = meta.get("format_version")
    if version not in SUPPORTED_CHECKPOINT_FORMATS:
        raise ModelError(
            f"checkpoint format version {version!r} is not supported (this version reads "
            f"{', '.join(map(str, SUPPORTED_CHECKPOINT_FORMATS))})",
            path=where,
            field="ner_lightning.format_version",
            fix="load it with the ner-lightning version that wrote it",
        )
    required = ("label_names", "backbone", "backbone_config", "use_crf" if version == 1 else "head")
    missing = [key for key in required if key not in meta]
    if missing:
        raise ModelError(f"checkpoint section 'ner_lightning' lacks {missing}", path=where, fix=fix)
    if version == 1:
        _upgrade_format_1(checkpoint)
    return checkpoint[CHECKPOINT_KEY]


def _upgrade_format_1(checkpoint: dict[str, Any]) -> None:
    """Rewrite a format-1 checkpoint (`use_crf`, CRF at `crf.*`) in place into format 2 (a head spec)."""
    meta = checkpoint[CHECKPOINT_KEY]
    hparams = checkpoint.get("hyper_parameters") or {}
    if meta["use_crf"]:
        rate = hparams.get("crf_learning_rate")
        head = {"class_path": f"{CRFHead.__module__}.CRFHead", "init_args": {"constrained": True}}
        head["init_args"]["transition_learning_rate"] = 5e-3 if rate is None else rate
    else:
        head = {"class_path": f"{CRFHead.__module__}.SoftmaxHead", "init_args": {"label_smoothing": 0.0}}
    checkpoint[CHECKPOINT_KEY] = {
        **{k: v for k, v in meta.items() if k != "use_crf"},
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "head": head,
    }
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith("crf.")]:
        state[f"head.{key}"] = state.pop(key)
    if isinstance(hparams, dict):
        hparams.pop("use_crf", None)
        hparams["head"] = head


__all__ = ["CHECKPOINT_KEY", "TokenClassifier"]
