"""`TokenClassifier`: the LightningModule that owns loss, metrics, logging and optimisation.

The network pieces are plain modules: the backbone (`backbone.py`), the emission head
(`heads.py`) and the optional IOB2-constrained CRF (`crf.py`). Batches follow the contract in
docs/architecture.md; evaluation reads predictions only at owned words, so a sentence split into
several windows still gets exactly one prediction per word.
"""

from __future__ import annotations

import inspect
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.nn import functional as F
from transformers import get_linear_schedule_with_warmup

from ner_lightning.contract import PRIMARY_METRIC, TEST_F1, TRAIN_LOSS, VAL_PRECISION, VAL_RECALL
from ner_lightning.errors import ModelError
from ner_lightning.metrics import EntityF1, EntityScores
from ner_lightning.model.backbone import load_backbone
from ner_lightning.model.crf import IOB2CRF
from ner_lightning.model.heads import EmissionHead

#: Key of the self-description every ner-lightning checkpoint carries.
CHECKPOINT_KEY = "ner_lightning"
CHECKPOINT_FORMAT_VERSION = 1
IGNORE_INDEX = -100

# Set while restoring a checkpoint: the backbone is rebuilt from this config instead of loaded.
_RESTORE_BACKBONE_CONFIG: ContextVar[dict[str, Any] | None] = ContextVar(
    "restore_backbone_config", default=None
)


def _metric_name_part(entity_type: str) -> str:
    """An entity type as it may appear inside an MLflow metric name."""
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", entity_type)


class TokenClassifier(L.LightningModule):
    """Transformer encoder + emission head (+ optional CRF) for IOB2 named-entity tagging.

    Args:
        backbone: Pretrained encoder: local folder, `pkg:<package>/<folder>` or hub name (also the tokenizer).
        label_names: Ordered label list, `O` first (linked from the data module; never set in YAML).
        use_crf: Put a linear-chain CRF over the words (IOB2-constrained decoding) instead of per-word argmax.
        dropout: Dropout on the encoder output before the emission head.
        learning_rate: Peak AdamW learning rate of the backbone and the head.
        crf_learning_rate: Peak learning rate of the CRF transition scores (they need a larger one).
        weight_decay: AdamW weight decay (not applied to biases, LayerNorm weights and CRF scores).
        warmup_ratio: Fraction of the training steps spent warming the learning rate up linearly from 0.
        strict_iob2: Score entities in strict IOB2 mode instead of conlleval-compatible.
    """

    def __init__(
        self,
        backbone: str,
        label_names: list[str],
        use_crf: bool = False,
        dropout: float = 0.1,
        learning_rate: float = 5e-5,
        crf_learning_rate: float = 5e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        strict_iob2: bool = False,
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
        self.save_hyperparameters()
        self.label_names = list(label_names)
        self.backbone = load_backbone(backbone, _RESTORE_BACKBONE_CONFIG.get())
        self._backbone_takes_token_types = (
            "token_type_ids" in inspect.signature(self.backbone.forward).parameters
        )
        self.head = EmissionHead(self.backbone.config.hidden_size, len(self.label_names), dropout)
        self.crf = IOB2CRF(self.label_names) if use_crf else None
        self.val_metric = EntityF1(self.label_names, strict=strict_iob2)
        self.test_metric = EntityF1(self.label_names, strict=strict_iob2)
        #: Scores of the last finished validation / test epoch (None before the first).
        self.last_scores: dict[str, EntityScores] = {}

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
        return self.head(hidden)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Emissions of a batch dict."""
        return self.emissions(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))

    def loss(self, emissions: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token cross-entropy (ignoring -100) or the CRF negative log-likelihood over words."""
        labels = batch["labels"]
        if self.crf is not None:
            word_mask = (batch["word_index"] >= 0) & (labels != IGNORE_INDEX)
            return self.crf.word_nll(emissions, labels, word_mask)
        return F.cross_entropy(emissions.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)

    def decode(self, emissions: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Predicted label id at every word position `[B, T]` (-1 elsewhere)."""
        word_mask = batch["word_index"] >= 0
        if self.crf is not None:
            return self.crf.decode_words(emissions, word_mask)
        return torch.where(word_mask, emissions.argmax(dim=-1), torch.full_like(batch["word_index"], -1))

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
        """AdamW (no decay on biases/LayerNorm/CRF) with linear warmup then linear decay, stepped per batch."""
        decay, no_decay = [], []
        for name, parameter in [*self.backbone.named_parameters(), *self.head.named_parameters()]:
            if not parameter.requires_grad:
                continue
            lowered = name.lower()
            (
                no_decay
                if name.endswith("bias") or "layernorm" in lowered or "layer_norm" in lowered
                else decay
            ).append(parameter)
        groups = [
            {"params": decay, "weight_decay": self.hparams.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if self.crf is not None:
            groups.append(
                {
                    "params": list(self.crf.parameters()),
                    "weight_decay": 0.0,
                    "lr": self.hparams.crf_learning_rate,
                }
            )
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.learning_rate)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * self.hparams.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # --- checkpoints -----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "label_names": list(self.label_names),
            "backbone": self.hparams.backbone,
            "backbone_config": self.backbone.config.to_dict(),
            "use_crf": self.crf is not None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = _checkpoint_meta(checkpoint, "checkpoint")
        if list(meta["label_names"]) != self.label_names:
            raise ModelError(
                f"the checkpoint was trained on labels {meta['label_names']}, the data has {self.label_names}",
                field="label_names",
                fix="resume with the dataset the checkpoint was trained on (or its labels.json)",
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
        if not path.is_file():
            raise ModelError(
                "checkpoint file does not exist",
                path=path,
                fix="check the path (e.g. <output_dir>/checkpoints/best.ckpt)",
            )
        try:
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError by cause
            raise ModelError(
                f"not a ner-lightning checkpoint: it cannot be loaded safely (weights only): {error}",
                path=path,
                fix="use a checkpoint written by `python -m ner_lightning fit`; never load untrusted pickles",
            ) from error
        meta = _checkpoint_meta(checkpoint, str(path))
        accepted = inspect.signature(cls.__init__).parameters
        # Lightning adds bookkeeping entries (e.g. `_instantiator`) that are not init arguments.
        hyper_parameters = {
            k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k in accepted
        }
        hyper_parameters.update(
            backbone=meta["backbone"], label_names=list(meta["label_names"]), use_crf=meta["use_crf"]
        )
        token = _RESTORE_BACKBONE_CONFIG.set(dict(meta["backbone_config"]))
        try:
            model = cls(**hyper_parameters)
        finally:
            _RESTORE_BACKBONE_CONFIG.reset(token)
        model.load_state_dict(checkpoint["state_dict"])
        model.eval()
        return model


def _checkpoint_meta(checkpoint: Any, where: str) -> dict[str, Any]:
    """The `ner_lightning` section of a checkpoint, or a ModelError saying why it is not one."""
    meta = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    fix = "use a checkpoint written by `python -m ner_lightning fit` (it carries a 'ner_lightning' section)"
    if not isinstance(meta, dict) or "state_dict" not in checkpoint:
        raise ModelError("not a ner-lightning checkpoint (no 'ner_lightning' section)", path=where, fix=fix)
    version = meta.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ModelError(
            f"checkpoint format version {version!r} is not supported (expected {CHECKPOINT_FORMAT_VERSION})",
            path=where,
            field="ner_lightning.format_version",
            fix="load it with the ner-lightning version that wrote it",
        )
    missing = [key for key in ("label_names", "backbone", "backbone_config", "use_crf") if key not in meta]
    if missing:
        raise ModelError(f"checkpoint section 'ner_lightning' lacks {missing}", path=where, fix=fix)
    return meta


__all__ = ["CHECKPOINT_KEY", "TokenClassifier"]
