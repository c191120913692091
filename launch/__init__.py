"""Orchestration of ner-lightning jobs on Azure ML or the local backend.

`launch` describes, submits and watches jobs. It never imports torch, lightning or
transformers: the notebook kernel stays light and can never train by accident. It meets the
training package only through command lines, config files, the dataset folder layout and the
names in `ner_lightning.contract` (an import-light module).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the module that defines it (imported on first use: `import launch` stays light).
_EXPORTS = {
    "LaunchError": "launch.errors",
    "LoadedConfig": "launch.configs",
    "load_config": "launch.configs",
    "ResolvedDataset": "launch.final_training",
    "ResolvedFinalTraining": "launch.final_training",
    "build_final_training_config": "launch.final_training",
    "load_final_training_config": "launch.final_training",
    "mark_variant_complete": "launch.final_training",
    "mark_variant_failed": "launch.final_training",
    "mark_variant_running": "launch.final_training",
    "Pipeline": "launch.pipeline",
    "load_pipeline_config": "launch.pipeline",
    "run_pipeline": "launch.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public names, imported from their modules on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'launch' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
