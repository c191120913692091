"""Load the transformer backbone: pretrained by name/path/`pkg:` reference, or rebuilt from a stored config.

Jobs run offline, so a hub name only works where the model is cached; the error says how to point
at a local folder instead. Restoring a checkpoint rebuilds the backbone from the config stored in
the checkpoint (its weights come from the checkpoint), so the pretrained files are not needed then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import AutoConfig, AutoModel, PreTrainedModel

from ner_lightning.errors import ModelError
from ner_lightning.resources import resolve_path


def load_backbone(name: str, config: Mapping[str, Any] | None = None) -> PreTrainedModel:
    """The encoder named by `name`, without a pooling layer.

    Args:
        name: Local folder, `pkg:<package>/<folder>` reference or Hugging Face hub name.
        config: A backbone config as `PretrainedConfig.to_dict()` wrote it. When given, the backbone is
            built from it with random weights (the caller loads trained weights next) and `name` is
            not read.

    Raises:
        ModelError: The backbone cannot be loaded offline, or the stored config is unusable.
    """
    if config is not None:
        model = _from_config(name, config)
    else:
        path = resolve_path(name)
        try:
            model = AutoModel.from_pretrained(path)
        except (OSError, ValueError, KeyError) as error:
            raise ModelError(
                f"cannot load backbone {name!r} ({type(error).__name__}: {error})",
                field="model.backbone",
                fix="jobs have no model hub: point --model.backbone at a local folder holding config.json and "
                "model weights (save one with `AutoModel.from_pretrained(name).save_pretrained(folder)` and the "
                "tokenizer alike), or at a `pkg:<package>/<folder>` reference",
            ) from error
    # The pooler is unused for token classification; its parameters would get no gradient (DDP fails on that).
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    # from_pretrained returns the model in eval mode; Lightning keeps each module's mode, so dropout
    # would stay off during training.
    model.train()
    return model


def _from_config(name: str, config: Mapping[str, Any]) -> PreTrainedModel:
    values = dict(config)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ModelError(
            f"the stored config of backbone {name!r} has no model_type",
            field="ner_lightning.backbone_config",
            fix="the checkpoint is damaged or was not written by ner-lightning; retrain or use another checkpoint",
        )
    try:
        backbone_config = AutoConfig.for_model(model_type, **values)
        return AutoModel.from_config(backbone_config)
    except (ValueError, KeyError, TypeError) as error:
        raise ModelError(
            f"cannot rebuild backbone {name!r} of type {model_type!r} from its stored config: {error}",
            field="ner_lightning.backbone_config",
            fix="install a transformers version that knows this model type",
        ) from error
