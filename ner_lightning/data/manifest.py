"""Dataset manifest (`manifest.json`) and the content fingerprint of a dataset folder.

The fingerprint is a sha256 over the names and contents of the files that define the data (the
split files and `labels.json`): the same data gives the same fingerprint wherever and whenever
it was written, and changing one tag changes it. The launcher uses it for idempotent uploads and
to tell whether a dataset version really changed. Pure Python (no torch): the launcher imports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ner_lightning.contract import LABELS_FILE, MANIFEST_FILE, REQUIRED_SPLITS, SPLIT_FILES
from ner_lightning.data.textfile import atomic_write_text
from ner_lightning.errors import DataError

#: Version of the manifest layout; bump when fields change meaning.
MANIFEST_SCHEMA_VERSION: Final = 1
#: Files whose content defines a dataset version (present ones are hashed, in this order).
DATA_FILES: Final = (*SPLIT_FILES.values(), LABELS_FILE)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_file_hashes(folder: str | Path) -> dict[str, str]:
    """sha256 of each data file present in a dataset folder (required split files must be there).

    Raises:
        DataError: The folder or a required split file is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            "dataset folder does not exist", path=folder, fix="pass the folder holding train.jsonl"
        )
    hashes = {}
    for name in DATA_FILES:
        path = folder / name
        if path.is_file():
            hashes[name] = file_sha256(path)
    missing = [SPLIT_FILES[split] for split in REQUIRED_SPLITS if SPLIT_FILES[split] not in hashes]
    if missing:
        raise DataError(
            f"missing required split file(s): {', '.join(missing)}",
            path=folder,
            fix="convert the data with `ner-data convert` or add the files",
        )
    return hashes


def fingerprint_of(hashes: Mapping[str, str]) -> str:
    """Fingerprint from {file name: sha256}: independent of paths, timestamps and dict order."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}\0{hashes[name]}\n".encode())
    return digest.hexdigest()


def dataset_fingerprint(folder: str | Path) -> str:
    """Content fingerprint of a dataset folder (hex sha256 over its split files and `labels.json`).

    Args:
        folder: A canonical dataset folder.

    Raises:
        DataError: The folder or a required split file is missing.
    """
    return fingerprint_of(data_file_hashes(folder))


def build_manifest(
    folder: str | Path,
    *,
    labels: list[str],
    splits: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of a dataset folder.

    Args:
        folder: The dataset folder (its data files are hashed).
        labels: The ordered label list.
        splits: Per-split counts (sentences, tokens, entities per type).
        source: Where the data came from (format, input file names and hashes, options).
    """
    folder = Path(folder)
    hashes = data_file_hashes(folder)
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "fingerprint": fingerprint_of(hashes),
        "files": {
            name: {"sha256": digest, "bytes": (folder / name).stat().st_size}
            for name, digest in hashes.items()
        },
        "labels": list(labels),
        "splits": dict(splits),
        "source": dict(source or {}),
    }


def manifest_text(manifest: Mapping[str, Any]) -> str:
    """Byte-stable JSON text of a manifest (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(manifest, ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def write_manifest(folder: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write `manifest.json` into the folder (atomically) and return its path."""
    path = Path(folder) / MANIFEST_FILE
    atomic_write_text(path, manifest_text(manifest))
    return path


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none.

    Raises:
        DataError: The manifest is not a JSON object.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(
            f"manifest is not valid JSON: {error}", path=path, fix="re-run `ner-data convert`"
        ) from None
    if not isinstance(manifest, dict):
        raise DataError("manifest is not a JSON object", path=path, fix="re-run `ner-data convert`")
    return manifest


def manifest_mismatches(folder: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """Data files whose content no longer matches the manifest (or that appeared or vanished)."""
    recorded = {name: entry.get("sha256") for name, entry in dict(manifest.get("files") or {}).items()}
    actual = data_file_hashes(folder)
    problems = []
    for name in sorted(set(recorded) | set(actual)):
        if name not in actual:
            problems.append(f"{name} is listed in the manifest but missing")
        elif name not in recorded:
            problems.append(f"{name} is not listed in the manifest")
        elif recorded[name] != actual[name]:
            problems.append(f"{name} changed since the manifest was written")
    return problems


def refresh_manifest(folder: str | Path) -> None:
    """Re-hash the data files of an existing manifest (after an in-place repair), keeping its other fields."""
    manifest = read_manifest(folder)
    if manifest is None:
        return
    folder = Path(folder)
    hashes = data_file_hashes(folder)
    manifest["files"] = {
        name: {"sha256": digest, "bytes": (folder / name).stat().st_size} for name, digest in hashes.items()
    }
    manifest["fingerprint"] = fingerprint_of(hashes)
    write_manifest(folder, manifest)
