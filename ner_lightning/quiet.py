"""Keep job logs honest: drop third-party noise that says nothing about the run.

Dropped: Lightning's product tips ("💡 Tip: ... litlogger / litmodels"), the `LeafSpec`
deprecation warning that Lightning's own pytree code raises on recent torch, MLflow's database
set-up chatter, onnxruntime's advice to pre-process a graph before quantization (a
shape-inference step this project's dynamic int8 quantization does not need), and the
transformers weight-loading progress bar. Everything else, warnings included, still shows.
"""

from __future__ import annotations

import logging
import warnings


class _DropMessages(logging.Filter):
    """Drop records whose message contains any of the given fragments (or, with `below`, under a level)."""

    def __init__(self, *fragments: str, below: int | None = None) -> None:
        super().__init__()
        self.fragments = fragments
        self.below = below

    def filter(self, record: logging.LogRecord) -> bool:
        if self.below is not None and record.levelno < self.below:
            return False
        message = str(record.msg)
        return not any(fragment in message for fragment in self.fragments)


_installed = False


def quiet_third_party_logs() -> None:
    """Install the filters (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    tips = _DropMessages("💡 Tip")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(tips)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # Filters survive MLflow's logging set-up (which resets these loggers' levels on import).
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).addFilter(_DropMessages(below=logging.WARNING))
    # onnxruntime.quantization logs this through the root logger.
    logging.getLogger().addFilter(_DropMessages("pre-processing before quantization"))
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # the torch-free serving install has no transformers
        return
    transformers_logging.disable_progress_bar()
