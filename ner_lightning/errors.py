"""Exception types of the training package, one per layer.

Each error names where the problem is (file, line, field) and what to do about it, so a
user can fix the input without reading a traceback.
"""

from __future__ import annotations

from pathlib import Path


class NerLightningError(Exception):
    """Base class: an error in user input or configuration with a location and a fix.

    Args:
        message: What is wrong.
        path: File the problem is in, if any.
        line: 1-based line number in that file, if any.
        field: Config key or JSON field concerned, if any.
        fix: What the user should do.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "")
        if self.field is not None:
            where = f"{where} [{self.field}]" if where else f"[{self.field}]"
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text


class DataError(NerLightningError):
    """A dataset file or folder is missing, unreadable or malformed."""


class ConfigError(NerLightningError):
    """A configuration value is missing, unknown or out of range."""


class ModelError(NerLightningError):
    """A backbone, checkpoint or exported model cannot be loaded or does not fit."""


class ExportError(NerLightningError):
    """ONNX export, quantization or the smoke test failed."""
