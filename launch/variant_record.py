"""One final-training variant as the bookkeeping sees it: statuses, folder names, the record."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from launch.errors import LaunchError
from launch.jobs import frozen_mapping
from ner_lightning.contract import CHECKPOINT_DIR, LAST_CHECKPOINT

VariantStatus = Literal["allocated", "running", "complete", "failed", "corrupt"]
STATUS_ALLOCATED: VariantStatus = "allocated"
STATUS_RUNNING: VariantStatus = "running"
STATUS_COMPLETE: VariantStatus = "complete"
STATUS_FAILED: VariantStatus = "failed"
#: Status given to a folder whose metadata.json cannot be read (kept, never reused).
STATUS_CORRUPT: VariantStatus = "corrupt"
#: Statuses of a variant that started but did not finish.
INCOMPLETE_STATUSES = (STATUS_ALLOCATED, STATUS_RUNNING, STATUS_FAILED)

GROUP_RE = re.compile(r"^spec_([0-9a-f]+)_exec_([0-9a-f]+)$")
VARIANT_RE = re.compile(r"^v([1-9][0-9]*)$")


class VariantBookkeepingWarning(UserWarning):
    """A metadata.json or index file was unreadable; the folders were used instead."""


class VariantBusyError(LaunchError):
    """Another live process owns the variant (it is training or resuming it)."""


def backbone_slug(backbone: str) -> str:
    """Folder-safe name of a backbone reference (`pkg:a/b/model` -> `model`, `org/name` -> `org-name`).

    Args:
        backbone: Backbone reference as written in configs.

    Returns:
        Lowercase letters, digits, `.`, `_` and `-` only.
    """
    text = backbone.removeprefix("pkg:").rstrip("/")
    parts = [part for part in re.split(r"[/\\]+", text) if part]
    # Hub names keep their organisation; paths keep the last meaningful folder.
    tail = parts[-2:] if len(parts) == 2 and not backbone.startswith(("pkg:", "/", ".")) else parts[-1:]
    slug = re.sub(r"[^a-z0-9._-]+", "-", "-".join(tail).lower()).strip("-.")
    return slug or "backbone"


def group_key(spec_fp: str, exec_fp: str) -> str:
    """Index key of one (spec_fp, exec_fp) pair."""
    return f"{spec_fp}_{exec_fp}"


@dataclass(frozen=True)
class VariantRecord:
    """One variant folder as the bookkeeping sees it.

    Attributes:
        spec_fp: Spec fingerprint.
        exec_fp: Exec fingerprint.
        variant: Variant number (>= 1).
        path: The variant folder.
        status: `allocated`, `running`, `complete`, `failed` or `corrupt`.
        checkpoint: Final checkpoint path recorded at completion, or None.
        metadata: The full metadata.json content (empty when corrupt).
    """

    spec_fp: str
    exec_fp: str
    variant: int
    path: Path
    status: VariantStatus
    checkpoint: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=frozen_mapping)

    @property
    def last_checkpoint(self) -> Path | None:
        """The resumable `last.ckpt` of this variant's training output, if it exists."""
        output_dir = Path(str(self.metadata.get("output_dir") or self.path))
        candidate = output_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
        return candidate if candidate.is_file() else None

    def index_entry(self, backend_root: Path) -> dict[str, Any]:
        """The index row of this variant."""
        try:
            relative = self.path.relative_to(backend_root).as_posix()
        except ValueError:
            relative = self.path.as_posix()
        return {
            "path": relative,
            "status": self.status,
            "checkpoint": self.checkpoint,
            "backbone": self.metadata.get("backbone"),
            "run_id": self.metadata.get("run_id"),
            "updated_at": self.metadata.get("updated_at"),
        }
