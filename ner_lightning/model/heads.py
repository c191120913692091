"""Emission head: per-subword label scores from the backbone's hidden states."""

from __future__ import annotations

import torch
from torch import nn


class EmissionHead(nn.Module):
    """Dropout followed by a linear layer to one score per label.

    Args:
        hidden_size: Width of the backbone's hidden states.
        num_labels: Number of labels (the length of the label list).
        dropout: Dropout probability applied to the hidden states during training.
    """

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`[B, T, H]` hidden states -> `[B, T, num_labels]` emissions."""
        return self.linear(self.dropout(hidden_states))
