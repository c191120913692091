"""Checks of training arguments that would otherwise fail deep inside torch, or not at all.

`TokenClassifier` calls `check_model_arguments` while it is built and the training CLI calls
`check_resume_checkpoint` for `--ckpt_path`, so a nonsense value is refused before any work with a
message naming the option and the fix (a negative learning rate would else surface as torch's
"Invalid learning rate" traceback at the first step; a zero one would train nothing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ner_lightning.data.records import label_list_problem
from ner_lightning.errors import ConfigError, ModelError

#: `--ckpt_path` values that Lightning resolves itself (not file names).
LIGHTNING_CKPT_KEYWORDS: Final = ("last", "best", "hpc", "registry")
#: The key every ner-lightning checkpoint carries (`ner_lightning.model.module.CHECKPOINT_KEY`).
_CHECKPOINT_KEY: Final = "ner_lightning"


def check_model_arguments(
    label_names: Sequence[str],
    dropout: float,
    learning_rate: float,
    crf_learning_rate: float | None,
    weight_decay: float,
) -> None:
    """Refuse model arguments that cannot train a tagger.

    Args:
        label_names: The label list (linked from the dataset): `O` first, each label once, IOB2.
        dropout: Must be in [0, 1).
        learning_rate: Must be a finite number > 0.
        crf_learning_rate: None (the head's default) or a finite number > 0.
        weight_decay: Must be a finite number >= 0.

    Raises:
        ConfigError: A value is out of range (the field and a usable value are named).
        ModelError: The label list has no leading `O`, a duplicate, or a label that is not IOB2.
    """
    for name, value, usable in (
        ("learning_rate", learning_rate, "5e-5"),
        ("crf_learning_rate", crf_learning_rate, "5e-3"),
    ):
        if value is None and name == "crf_learning_rate":
            continue
        if not _finite(value) or value <= 0:
            raise ConfigError(
                f"the learning rate must be a number greater than 0, got {value}",
                field=f"model.{name}",
                fix=f"pass a positive rate, e.g. --model.{name} {usable}",
            )
    if not _finite(dropout) or not 0.0 <= dropout < 1.0:
        raise ConfigError(
            f"dropout is a probability in [0, 1), got {dropout}",
            field="model.dropout",
            fix="pass e.g. --model.dropout 0.1 (0 switches it off)",
        )
    if not _finite(weight_decay) or weight_decay < 0:
        raise ConfigError(
            f"weight decay must be >= 0, got {weight_decay}",
            field="model.weight_decay",
            fix="pass e.g. --model.weight_decay 0.01 (0 switches it off)",
        )
    check_label_names(label_names)


def check_label_names(label_names: Sequence[str]) -> None:
    """Refuse a label list without a leading `O`, with a duplicate, or with a non-IOB2 label.

    Raises:
        ModelError: The problem, with the fix (the list comes from the dataset's `labels.json`).
    """
    problem = label_list_problem(label_names)
    if problem is not None:
        raise ModelError(
            problem,
            field="model.label_names",
            fix='it is linked from the dataset: write its labels.json as a JSON list of unique IOB2 labels with "O" '
            'first, e.g. ["O", "B-PER", "I-PER"]',
        )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def checkpoint_load_problem(error: BaseException) -> str:
    """Why `torch.load(..., weights_only=True)` refused a file, in words that do not advise unsafe loading.

    torch's own message ends with "Re-running `torch.load` with `weights_only` set to `False` will
    likely succeed" — advice that runs any code a tampered checkpoint holds.
    """
    text = str(error)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return (
            f"it holds a Python object ({blocked.group(1)}) that safe (weights-only) loading refuses; "
            "a file like this can run code when loaded unsafely"
        )
    if "mmap can only be used" in text:
        return "it is not a PyTorch checkpoint archive (a plain pickle or an old torch format)"
    if "weights_only" in text or "Weights only load failed" in text or "Unsupported operand" in text:
        return "it is not a PyTorch checkpoint that loads safely (weights only): a plain or tampered pickle"
    if isinstance(error, EOFError) or "central directory" in text or isinstance(error, OSError):
        return "the file is truncated or corrupt (not a complete checkpoint archive)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(error).__name__}{': ' + first if first else ''}"


def check_resume_checkpoint(ckpt_path: str | Path | None) -> None:
    """Refuse a `--ckpt_path` that is missing, a folder, empty, truncated, unsafe or not ours.

    The file is opened with weights-only loading and memory-mapped, so this costs little even
    for a large checkpoint. Lightning's keywords (`last`, `best`, ...) and URLs are left to it.

    Raises:
        ModelError: What is wrong with the file, with the field `ckpt_path` and a fix.
    """
    if ckpt_path is None:
        return
    value = str(ckpt_path)
    if value in LIGHTNING_CKPT_KEYWORDS or value.startswith("registry:") or "://" in value:
        return
    path = Path(value)
    fix = (
        "pass a checkpoint written by `python -m ner_lightning fit`, e.g. <output_dir>/checkpoints/last.ckpt"
    )
    if not path.exists():
        raise ModelError("checkpoint file does not exist", path=path, field="ckpt_path", fix=fix)
    if path.is_dir():
        raise ModelError("expected a checkpoint file, found a folder", path=path, field="ckpt_path", fix=fix)
    if path.stat().st_size == 0:
        raise ModelError("the checkpoint file is empty", path=path, field="ckpt_path", fix=fix)
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, OSError or EOFError by cause
        raise ModelError(
            f"cannot resume from this file: {checkpoint_load_problem(error)}",
            path=path,
            field="ckpt_path",
            fix=f"{fix}; never load checkpoints from untrusted sources",
        ) from None
    if not isinstance(checkpoint, dict) or _CHECKPOINT_KEY not in checkpoint:
        raise ModelError(
            f"not a ner-lightning checkpoint (no {_CHECKPOINT_KEY!r} section)",
            path=path,
            field="ckpt_path",
            fix=fix,
        )
