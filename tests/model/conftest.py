"""Fixtures for the model tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_backbones import TINY_BACKBONES


@pytest.fixture(params=sorted(TINY_BACKBONES), ids=sorted(TINY_BACKBONES))
def tiny_backbone(request: pytest.FixtureRequest) -> Path:
    """Each tiny backbone folder in turn (BERT, DeBERTa-v2, DistilBERT)."""
    return TINY_BACKBONES[request.param]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """The test machines share few cores; training tests use one thread each."""
    import torch

    torch.set_num_threads(1)
