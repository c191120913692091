"""Reading a user's text file with a clear error for every way it can be unreadable.

Every ingestion reader starts here, so a missing file, a binary file or a file in the wrong
encoding gives the same message (file, line, and what to do) whatever the format.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ner_lightning.errors import DataError

# Bytes of a file inspected for NUL bytes: text files never contain them, binary files nearly always do.
_BINARY_PROBE = 8192


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped, CRLF line ends become LF).

    Args:
        path: The file.

    Returns:
        The text with `\\n` line ends.

    Raises:
        DataError: The file is missing, is a folder, is binary, or is not valid UTF-8.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file does not exist", path=path, fix="check the path")
    if path.is_dir():
        raise DataError("expected a file, found a folder", path=path, fix="pass the file inside the folder")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(
            f"cannot read file: {error.strerror}", path=path, fix="check the file permissions"
        ) from None
    if b"\x00" in data[:_BINARY_PROBE]:
        raise DataError(
            "file is binary (it contains NUL bytes), not text",
            path=path,
            fix="pass the text file (UTF-8); decompress archives first",
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"file is not valid UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})",
            path=path,
            line=line,
            fix="re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 in > out`",
        ) from None
    return text.replace("\r\n", "\n")


def text_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file, split on `\\n` only.

    `str.splitlines` would also split on unicode separators (U+2028, U+0085, ...) that may sit
    inside a token, so lines are split on the newline character alone.
    """
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_json_object(line: str, path: str | Path, number: int, *, shape: str) -> dict[str, Any]:
    """Parse one JSON Lines line that must hold a JSON object.

    Args:
        line: The line's text (not blank).
        path: The file, for the error.
        number: The 1-based line number, for the error.
        shape: The record shape the format expects (e.g. `{"tokens": [...], "ner_tags": [...]}`),
            shown in the fix when the line holds JSON that is not an object.

    Returns:
        The parsed object.

    Raises:
        DataError: The line is not valid JSON, or is JSON but not an object.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(
            f"malformed JSON: {error.msg} (column {error.colno})",
            path=path,
            line=number,
            fix="write one complete JSON object per line",
        ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"expected a JSON object, found {type(record).__name__}",
            path=path,
            line=number,
            fix=f"write {shape} per line",
        )
    return record


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
