"""The launcher's console scripts: check the extra a command needs, then run it (see ner_lightning/scripts.py)."""

from __future__ import annotations

from typing import Any

from ner_lightning.scripts import run_with_extra


def pipeline() -> Any:
    """`ner-pipeline`: the launcher (`train` extra for the local backend, `azure` for Azure ML)."""
    return run_with_extra("ner-pipeline", "launch.cli:main", ("train", "azure"))


def provision() -> Any:
    """`ner-provision`: create the Azure ML workspace resources (`azure` extra)."""
    return run_with_extra("ner-provision", "launch.azure.provision:main", ("azure",))
