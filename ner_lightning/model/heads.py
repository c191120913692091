"""Heads: the part of the model between the backbone's hidden states and the word labels.

A head is a plain `nn.Module` implementing `TokenHead`:
- `build(hidden_size, label_names)` creates its parameters (the model calls it once it knows both);
- `forward(hidden [B, T, H]) -> scores [B, T, num_labels]`: the part exported into the ONNX graph
  (output `emissions`);
- `loss(scores, labels, word_mask)`: the training loss;
- `decoder_name` and `decoder_args()`: the torch-free decoder (`ner_lightning.decoding`) that turns
  its scores into one label per word, in training-time evaluation, in the smoke test and in the
  ONNX predictor alike; the arguments go into `ner_model.json`;
- `parameter_groups(weight_decay)`: its AdamW parameter groups (e.g. a larger learning rate);
- `spec()`: `{"class_path", "init_args"}`, recorded in checkpoints and model folders. It follows
  the scikit-learn convention: every `__init__` argument is kept as an attribute of the same name.

Configs choose a head LightningCLI-style (`model.head: {class_path: ..., init_args: {...}}`) or by
name (`--model.head crf`); `HEADS` lists the names. docs/heads.md shows how to add one.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ner_lightning.decoding import Decoder, available_decoders, build_decoder
from ner_lightning.errors import ModelError
from ner_lightning.model.crf import DISALLOWED_SCORE, IOB2CRF

#: Label id of positions that take no part in the loss.
IGNORE_INDEX = -100


def split_decay(named_parameters: Sequence[tuple[str, nn.Parameter]]) -> tuple[list, list]:
    """`(decay, no_decay)`: biases and LayerNorm weights get no weight decay."""
    decay, no_decay = [], []
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        lowered = name.lower()
        bucket = (
            no_decay if name.endswith("bias") or "layernorm" in lowered or "layer_norm" in lowered else decay
        )
        bucket.append(parameter)
    return decay, no_decay


class TokenHead(nn.Module):
    """Interface of a head (see the module docstring); subclasses implement `build` and `forward`."""

    #: Registered decoder (`ner_lightning.decoding`) that decodes this head's scores.
    decoder_name: ClassVar[str] = "argmax"

    def build(self, hidden_size: int, label_names: Sequence[str]) -> None:
        """Create the parameters for a backbone of width `hidden_size` and these labels."""
        raise NotImplementedError

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[B, T, H]` hidden states -> `[B, T, num_labels]` scores."""
        raise NotImplementedError

    def loss(self, scores: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """Token cross-entropy over the labelled positions (label -100 elsewhere).

        Args:
            scores: `[B, T, L]` output of `forward`.
            labels: `[B, T]` label ids, -100 where no label applies.
            word_mask: `[B, T]` bool, True at the first subword of each word.
        """
        return F.cross_entropy(scores.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)

    def decoder_args(self) -> dict[str, Any]:
        """JSON-ready arguments of the decoder (recorded in `ner_model.json`)."""
        return {}

    def decoder(self) -> Decoder:
        """The decoder of the current parameters."""
        return build_decoder(self.decoder_name, self.decoder_args(), self.num_labels)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups of the head (the model's learning rate unless a group sets `lr`)."""
        decay, no_decay = split_decay(list(self.named_parameters()))
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    @property
    def num_labels(self) -> int:
        """Number of labels (known after `build`)."""
        return len(self.label_names)

    def spec(self) -> dict[str, Any]:
        """`{"class_path", "init_args"}` that rebuilds this head (init arguments read from attributes)."""
        init_args = {}
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if not hasattr(self, name):
                raise ModelError(
                    f"head {type(self).__qualname__} does not keep its init argument {name!r} as an attribute",
                    field="model.head",
                    fix=f"set `self.{name} = {name}` in its __init__ (checkpoints record the head by its arguments)",
                )
            init_args[name] = getattr(self, name)
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}


class SoftmaxHead(TokenHead):
    """A linear layer to one score per label; per-word argmax decoding.

    Args:
        label_smoothing: Cross-entropy label smoothing (0: none).
    """

    decoder_name: ClassVar[str] = "argmax"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def build(self, hidden_size: int, label_names: Sequence[str]) -> None:
        self.label_names = list(label_names)
        self.linear = nn.Linear(hidden_size, len(label_names))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden_states)

    def loss(self, scores: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            scores.flatten(0, 1),
            labels.flatten(),
            ignore_index=IGNORE_INDEX,
            label_smoothing=self.label_smoothing,
        )


class CRFHead(TokenHead):
    """A linear layer to emission scores and a linear-chain CRF over the words (IOB2-constrained Viterbi).

    Args:
        transition_learning_rate: Peak learning rate of the CRF's transition scores (they start
            small and random, and need a larger rate than the encoder).
        constrained: Forbid moves strict IOB2 does not allow (`O -> I-X`, `B-X -> I-Y`) when decoding.
    """

    decoder_name: ClassVar[str] = "crf_viterbi"

    def __init__(self, transition_learning_rate: float = 5e-3, constrained: bool = True) -> None:
        super().__init__()
        self.transition_learning_rate = transition_learning_rate
        self.constrained = constrained

    def build(self, hidden_size: int, label_names: Sequence[str]) -> None:
        self.label_names = list(label_names)
        self.linear = nn.Linear(hidden_size, len(label_names))
        self.crf = IOB2CRF(label_names, constrained=self.constrained)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden_states)

    def loss(self, scores: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """CRF negative log-likelihood over the labelled words."""
        return self.crf.word_nll(scores, labels, word_mask & (labels != IGNORE_INDEX))

    def decoder_args(self) -> dict[str, Any]:
        """Raw CRF scores, the IOB2 allowed masks and the score of disallowed moves."""
        crf = self.crf
        size = crf.num_tags

        def values(tensor: torch.Tensor) -> list[Any]:
            return tensor.detach().cpu().float().numpy().tolist()

        def mask(name: str, shape: tuple[int, ...]) -> list[Any]:
            if not crf.constrained:
                return torch.ones(shape, dtype=torch.bool).tolist()
            return getattr(crf, name).detach().cpu().bool().tolist()

        return {
            "transitions": values(crf.transitions),
            "start_transitions": values(crf.start_transitions),
            "end_transitions": values(crf.end_transitions),
            "allowed_transitions": mask("allowed_transitions", (size, size)),
            "allowed_start": mask("allowed_start", (size,)),
            "allowed_end": mask("allowed_end", (size,)),
            "disallowed_score": DISALLOWED_SCORE,
            "constrained": bool(crf.constrained),
        }

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        decay, no_decay = split_decay(list(self.linear.named_parameters()))
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": list(self.crf.parameters()), "weight_decay": 0.0, "lr": self.transition_learning_rate},
        ]


#: Heads by name (`--model.head crf`); any `TokenHead` subclass is also accepted by class path.
HEADS: dict[str, type[TokenHead]] = {"softmax": SoftmaxHead, "crf": CRFHead}


def available_heads() -> str:
    """The head names and class paths, for error messages."""
    return ", ".join(f"{name} ({cls.__module__}.{cls.__qualname__})" for name, cls in HEADS.items())


def resolve_head(head: TokenHead | str | Mapping[str, Any] | None, use_crf: bool | None = None) -> TokenHead:
    """A head instance from what a config or a checkpoint gives.

    Args:
        head: An instance, a name of `HEADS`, a class path (`package.module.Class`), a
            `{"class_path", "init_args"}` mapping, or None (the head `use_crf` implies).
        use_crf: The former on/off switch of the CRF (old configs and checkpoints): True means
            `crf`, False `softmax`. With a head given, True must agree with it and False is ignored.

    Raises:
        ModelError: The head does not exist, does not implement `TokenHead`, cannot be built from
            its arguments, or contradicts `use_crf`.
    """
    if head is None:
        head = "crf" if use_crf else "softmax"
    if isinstance(head, str):
        head = {"class_path": head, "init_args": {}}
    if isinstance(head, Mapping):
        head = _instantiate(head)
    if not isinstance(head, TokenHead):
        raise ModelError(
            f"{type(head).__module__}.{type(head).__qualname__} is not a head: it does not subclass "
            f"ner_lightning.model.heads.TokenHead; available heads: {available_heads()}",
            field="model.head",
            fix="subclass TokenHead (see docs/heads.md) or pick an available head",
        )
    # `use_crf: false` was the old default that old launchers always pass: a given head wins over it.
    if use_crf and not isinstance(head, CRFHead):
        raise ModelError(
            f"model.use_crf=true contradicts model.head={type(head).__qualname__}",
            field="model.use_crf",
            fix="drop use_crf (deprecated): model.head chooses the head",
        )
    if head.decoder_name not in available_decoders():
        raise ModelError(
            f"head {type(head).__qualname__} names decoder {head.decoder_name!r}, which is not registered; "
            f"available decoders: {', '.join(available_decoders())}",
            field="model.head",
            fix="set decoder_name to an available decoder (the ONNX predictor decodes only with these)",
        )
    return head


def _instantiate(spec: Mapping[str, Any]) -> Any:
    class_path = spec.get("class_path")
    if not isinstance(class_path, str) or not class_path:
        raise ModelError(
            f"a head needs a class_path, got {dict(spec)!r}",
            field="model.head",
            fix=f"name one of the available heads: {available_heads()}",
        )
    init_args = dict(spec.get("init_args") or {})
    cls = HEADS.get(class_path) or _import_class(class_path)
    try:
        return cls(**init_args)
    except TypeError as error:
        raise ModelError(
            f"cannot build head {class_path} with {init_args}: {error}",
            field="model.head.init_args",
            fix="pass the arguments its __init__ takes",
        ) from error


def _import_class(class_path: str) -> Any:
    module_name, _, name = class_path.rpartition(".")
    unknown = ModelError(
        f"head {class_path!r} does not exist; available heads: {available_heads()}",
        field="model.head",
        fix="use one of these names, or the full class path of a TokenHead subclass importable here",
    )
    if not module_name:
        raise unknown
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise unknown from error
    cls = getattr(module, name, None)
    if cls is None:
        raise unknown
    if not (inspect.isclass(cls) and issubclass(cls, TokenHead)):
        raise ModelError(
            f"{class_path} is not a head: it does not subclass ner_lightning.model.heads.TokenHead; "
            f"available heads: {available_heads()}",
            field="model.head",
            fix="subclass TokenHead (see docs/heads.md) or pick an available head",
        )
    return cls
