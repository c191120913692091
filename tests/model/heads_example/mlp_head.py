"""A third head, added from this one file (acceptance point 1 of issue 15; docs/heads.md walks through it).

A per-token MLP: hidden states -> Linear -> GELU -> Linear -> one score per label, trained with
cross-entropy (the `TokenHead` default) and decoded by the registered `argmax` decoder, so the
ONNX predictor decodes it without knowing this class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ner_lightning.model.heads import TokenHead


class MLPHead(TokenHead):
    """Two-layer per-token MLP over the encoder output.

    Args:
        width: Width of the hidden layer.
    """

    decoder_name = "argmax"

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.width = width  # kept under its argument's name: checkpoints record the head by its arguments

    def build(self, hidden_size: int, label_names: Sequence[str]) -> None:
        self.label_names = list(label_names)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, self.width), nn.GELU(), nn.Linear(self.width, len(label_names))
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden_states)
