"""Small canonical dataset folders for the ingestion tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_folder(folder: Path, splits: dict[str, list], labels: list[str] | None = None) -> Path:
    """A canonical folder from {file name: [records or raw lines]}."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in splits.items():
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
        (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if labels is not None:
        (folder / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    return folder


def rec(tokens: str, tags: str) -> dict:
    return {"tokens": tokens.split(), "ner_tags": tags.split()}
