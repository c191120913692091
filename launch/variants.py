"""Final-training output folders, their `metadata.json`, the lookup index and atomic variant numbers.

Layout under one backend root (`outputs/final_training/<backend>/`):

    <backbone slug>/spec_<spec_fp>_exec_<exec_fp>/v<N>/metadata.json
    index.json    fast lookup: "<spec_fp>_<exec_fp>" -> {"<N>": entry}
    latest.json   cache: "<spec_fp>_<exec_fp>" -> entry of the latest complete variant
    .lock         file lock serialising allocation and every bookkeeping write

The variant folders are the source of truth. The index and the cache are rebuilt from them
whenever they are missing or corrupt; a corrupt `metadata.json` is reported and left in place,
and its folder keeps its variant number (a variant is never lost or reused). Variant numbers
only grow: the next number is one more than the highest ever seen, so a gap left by a deleted
folder is not filled.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from launch.errors import LaunchError
from launch.files import write_json_atomic
from launch.jobs import frozen_mapping
from launch.variant_owners import current_owner, owned_by_another, utc_now
from launch.variant_record import (
    GROUP_RE,
    STATUS_ALLOCATED,
    STATUS_COMPLETE,
    STATUS_CORRUPT,
    STATUS_FAILED,
    STATUS_RUNNING,
    VARIANT_RE,
    VariantBookkeepingWarning,
    VariantBusyError,
    VariantRecord,
    VariantStatus,
    group_key,
)

LOGGER = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"
INDEX_FILE = "index.json"
CACHE_FILE = "latest.json"
LOCK_FILE = ".lock"
INDEX_SCHEMA_VERSION = 1


class VariantStore:
    """Variant folders, metadata, index and cache of one backend's final-training outputs.

    Args:
        backend_root: `outputs/final_training/<backend>` (created on first write).
        lock_timeout_s: How long to wait for another process holding the bookkeeping lock.
    """

    def __init__(self, backend_root: Path, lock_timeout_s: float = 120.0) -> None:
        self.root = Path(backend_root)
        # One lock object per store: FileLock is re-entrant per object, so nested helpers
        # (allocate -> read_index -> rebuild_index) never deadlock on themselves.
        self._file_lock = FileLock(str(self.root / LOCK_FILE), timeout=lock_timeout_s)

    # --- paths ------------------------------------------------------------------------------
    def group_dir(self, slug: str, spec_fp: str, exec_fp: str) -> Path:
        """Folder holding every variant of one (spec_fp, exec_fp)."""
        return self.root / slug / f"spec_{spec_fp}_exec_{exec_fp}"

    def variant_dir(self, slug: str, spec_fp: str, exec_fp: str, variant: int) -> Path:
        """Folder of one variant."""
        return self.group_dir(slug, spec_fp, exec_fp) / f"v{variant}"

    def _lock(self) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return self._file_lock

    # --- reading the folders (source of truth) ----------------------------------------------
    def read_record(self, path: Path) -> VariantRecord:
        """Read one variant folder; a corrupt metadata.json is reported and gives status `corrupt`.

        Args:
            path: `.../spec_<fp>_exec_<fp>/v<N>`.
        """
        group = GROUP_RE.match(path.parent.name)
        number = VARIANT_RE.match(path.name)
        if group is None or number is None:
            raise LaunchError(
                "not a final-training variant folder",
                path=path,
                fix="variant folders are named .../spec_<fp>_exec_<fp>/v<N>",
            )
        spec_fp, exec_fp = group.groups()
        meta_path = path / METADATA_FILE
        try:
            data = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("status") not in (
                STATUS_ALLOCATED,
                STATUS_RUNNING,
                STATUS_COMPLETE,
                STATUS_FAILED,
            ):
                raise ValueError("missing or unknown 'status'")
        except (OSError, ValueError) as error:
            message = (
                f"{meta_path}: unreadable variant metadata ({error}); variant v{number.group(1)} is kept "
                "as 'corrupt' and its number is never reused. Fix: repair or delete the file by hand."
            )
            LOGGER.warning(message)
            warnings.warn(message, VariantBookkeepingWarning, stacklevel=2)
            return VariantRecord(spec_fp, exec_fp, int(number.group(1)), path, STATUS_CORRUPT)
        return VariantRecord(
            spec_fp,
            exec_fp,
            int(number.group(1)),
            path,
            data["status"],
            data.get("checkpoint"),
            frozen_mapping(data),
        )

    def scan(self, spec_fp: str | None = None, exec_fp: str | None = None) -> list[VariantRecord]:
        """Every variant folder (optionally of one fingerprint pair), ordered by variant number."""
        if not self.root.is_dir():
            return []
        pattern = f"*/spec_{spec_fp or '*'}_exec_{exec_fp or '*'}/v*"
        records = []
        for path in self.root.glob(pattern):
            if path.is_dir() and VARIANT_RE.match(path.name) and GROUP_RE.match(path.parent.name):
                records.append(self.read_record(path))
        return sorted(records, key=lambda record: (record.spec_fp, record.exec_fp, record.variant))

    def find(self, spec_fp: str, exec_fp: str, variant: int) -> VariantRecord | None:
        """The variant folder of `(spec_fp, exec_fp, variant)` under any backbone slug, or None."""
        if not self.root.is_dir():
            return None
        for path in self.root.glob(f"*/spec_{spec_fp}_exec_{exec_fp}/v{variant}"):
            if path.is_dir():
                return self.read_record(path)
        return None

    def next_variant_number(self, spec_fp: str, exec_fp: str) -> int:
        """One more than the highest variant number known for the pair (1 when there is none)."""
        numbers = [record.variant for record in self.scan(spec_fp, exec_fp)]
        numbers += [int(n) for n in self.read_index().get(group_key(spec_fp, exec_fp), {})]
        return max(numbers, default=0) + 1

    # --- index and cache --------------------------------------------------------------------
    def read_index(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The index `{"<spec>_<exec>": {"<N>": entry}}`; missing -> rebuilt, corrupt -> reported and rebuilt."""
        path = self.root / INDEX_FILE
        if not path.is_file():
            return self._index_from_folders() if self.root.is_dir() else {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            variants = data["variants"]
            if data.get("schema") != INDEX_SCHEMA_VERSION or not isinstance(variants, dict):
                raise ValueError("unexpected schema")
            for entries in variants.values():
                if not isinstance(entries, dict) or not all(
                    isinstance(entry, dict) and "status" in entry for entry in entries.values()
                ):
                    raise ValueError("malformed entry")
            return variants
        except (OSError, ValueError, KeyError, TypeError) as error:
            message = (
                f"{path}: corrupt final-training index ({error}); rebuilding it from the variant folders. "
                "No variant is lost: the folders are the source of truth."
            )
            LOGGER.warning(message)
            warnings.warn(message, VariantBookkeepingWarning, stacklevel=2)
            return self.rebuild_index()

    def _index_from_folders(self) -> dict[str, dict[str, dict[str, Any]]]:
        variants: dict[str, dict[str, dict[str, Any]]] = {}
        for record in self.scan():
            key = group_key(record.spec_fp, record.exec_fp)
            variants.setdefault(key, {})[str(record.variant)] = record.index_entry(self.root)
        return variants

    def rebuild_index(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Rebuild `index.json` from the variant folders and write it atomically."""
        with self._lock():
            variants = self._index_from_folders()
            write_json_atomic(self.root / INDEX_FILE, {"schema": INDEX_SCHEMA_VERSION, "variants": variants})
        return variants

    def _write_index_entry(self, record: VariantRecord) -> None:
        """Update one index row (caller holds the lock)."""
        variants = self.read_index()
        variants.setdefault(group_key(record.spec_fp, record.exec_fp), {})[str(record.variant)] = (
            record.index_entry(self.root)
        )
        write_json_atomic(self.root / INDEX_FILE, {"schema": INDEX_SCHEMA_VERSION, "variants": variants})

    def read_cache(self) -> dict[str, dict[str, Any]]:
        """The latest-complete cache; unreadable -> reported and treated as empty (it is only a cache)."""
        path = self.root / CACHE_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except (OSError, ValueError) as error:
            message = f"{path}: unreadable latest-training cache ({error}); ignoring it"
            LOGGER.warning(message)
            warnings.warn(message, VariantBookkeepingWarning, stacklevel=2)
            return {}

    # --- lookups used by checkpoint resolution ----------------------------------------------
    def lookup_index(self, spec_fp: str, exec_fp: str) -> dict[str, Any] | None:
        """Latest complete variant of the pair according to the index, as `{variant, path, checkpoint}`."""
        entries = self.read_index().get(group_key(spec_fp, exec_fp), {})
        complete = [(int(n), e) for n, e in entries.items() if e.get("status") == STATUS_COMPLETE]
        if not complete:
            return None
        number, entry = max(complete, key=lambda item: item[0])
        return {
            "variant": number,
            "path": str(self.root / entry["path"]),
            "checkpoint": entry.get("checkpoint"),
        }

    def lookup_metadata(self, spec_fp: str, exec_fp: str) -> dict[str, Any] | None:
        """Latest complete variant of the pair found by reading metadata.json files."""
        complete = [r for r in self.scan(spec_fp, exec_fp) if r.status == STATUS_COMPLETE]
        if not complete:
            return None
        record = complete[-1]
        return {"variant": record.variant, "path": str(record.path), "checkpoint": record.checkpoint}

    def lookup_cache(self, spec_fp: str, exec_fp: str) -> dict[str, Any] | None:
        """Latest complete variant of the pair according to the cache file."""
        entry = self.read_cache().get(group_key(spec_fp, exec_fp))
        if not isinstance(entry, dict) or "variant" not in entry:
            return None
        return {
            "variant": int(entry["variant"]),
            "path": entry.get("path"),
            "checkpoint": entry.get("checkpoint"),
        }

    # --- writing ----------------------------------------------------------------------------
    def allocate(self, slug: str, spec_fp: str, exec_fp: str, metadata: Mapping[str, Any]) -> VariantRecord:
        """Atomically claim the next variant number of the pair and write its metadata (`allocated`).

        Two processes allocating at once always get different numbers: the number is chosen
        under a file lock and claimed by `os.mkdir`, which fails if the folder exists.

        Args:
            slug: Backbone slug (folder level above the fingerprints).
            spec_fp: Spec fingerprint.
            exec_fp: Exec fingerprint.
            metadata: Facts to store (backbone, dataset, hyperparameters, ...).

        Returns:
            The new variant.
        """
        with self._lock():
            number = self.next_variant_number(spec_fp, exec_fp)
            while True:
                path = self.variant_dir(slug, spec_fp, exec_fp, number)
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    path.mkdir()
                    break
                except FileExistsError:
                    number += 1
            data = {**metadata, "owner": current_owner()}
            return self._write(path, spec_fp, exec_fp, number, STATUS_ALLOCATED, data, created=True)

    def claim(
        self, slug: str, spec_fp: str, exec_fp: str, variant: int, metadata: Mapping[str, Any]
    ) -> VariantRecord:
        """Claim an explicit variant number for this process.

        A new number is created (`allocated`); an existing complete variant is returned as it is
        (the caller decides); an existing incomplete one is taken over unless a live process owns it.

        Raises:
            VariantBusyError: Another live process owns the variant.
        """
        with self._lock():
            existing = self.find(spec_fp, exec_fp, variant)
            if existing is not None:
                if existing.status == STATUS_COMPLETE:
                    return existing
                return self._take_over(existing)
            path = self.variant_dir(slug, spec_fp, exec_fp, variant)
            path.mkdir(parents=True)
            data = {**metadata, "owner": current_owner()}
            return self._write(path, spec_fp, exec_fp, variant, STATUS_ALLOCATED, data, created=True)

    def acquire(self, path: Path) -> VariantRecord:
        """Make this process the owner of an incomplete variant (to resume it).

        Raises:
            VariantBusyError: Another live process owns the variant.
        """
        with self._lock():
            return self._take_over(self.read_record(Path(path)))

    def _take_over(self, record: VariantRecord) -> VariantRecord:
        """Record this process as the owner of `record` (caller holds the lock)."""
        if owned_by_another(record):
            owner = record.metadata.get("owner") or {}
            raise VariantBusyError(
                f"variant v{record.variant} of spec_{record.spec_fp}_exec_{record.exec_fp} is being trained "
                f"by process {owner.get('pid')} on {owner.get('host')} (since {owner.get('at')})",
                path=record.path,
                fix="wait for that run to finish, or set run.mode: force_new (or variant.number: null) "
                "to train a new variant",
            )
        data = {**record.metadata, "owner": current_owner()}
        return self._write(record.path, record.spec_fp, record.exec_fp, record.variant, record.status, data)

    def update(self, path: Path, status: VariantStatus, **fields: Any) -> VariantRecord:
        """Set a variant's status and facts in metadata.json, the index and (when complete) the cache.

        Args:
            path: The variant folder.
            status: New status.
            **fields: Facts to record (checkpoint, metrics, run_id, job_id, output_dir, error...).

        Returns:
            The updated variant.

        Raises:
            LaunchError: The variant is complete (a complete variant is never rewritten).
        """
        with self._lock():
            record = self.read_record(Path(path))
            if record.status == STATUS_COMPLETE:
                raise LaunchError(
                    f"variant v{record.variant} of spec_{record.spec_fp}_exec_{record.exec_fp} is complete: "
                    "its metadata is never rewritten",
                    path=record.path / METADATA_FILE,
                    fix="train a new variant (run.mode: force_new) instead of changing a complete one",
                )
            data = dict(record.metadata)
            data.update({key: value for key, value in fields.items()})
            return self._write(record.path, record.spec_fp, record.exec_fp, record.variant, status, data)

    def _write(
        self,
        path: Path,
        spec_fp: str,
        exec_fp: str,
        variant: int,
        status: VariantStatus,
        data: dict[str, Any],
        created: bool = False,
    ) -> VariantRecord:
        """Write metadata.json + index (+ cache when complete); caller holds the lock."""
        now = utc_now()
        data.update({"spec_fp": spec_fp, "exec_fp": exec_fp, "variant": variant, "status": status})
        data["updated_at"] = now
        if created:
            data["created_at"] = now
        if status == STATUS_RUNNING:
            data.setdefault("started_at", now)
        if status in (STATUS_COMPLETE, STATUS_FAILED):
            data["finished_at"] = now
        write_json_atomic(path / METADATA_FILE, data)
        record = VariantRecord(
            spec_fp, exec_fp, variant, path, status, data.get("checkpoint"), frozen_mapping(data)
        )
        self._write_index_entry(record)
        if status == STATUS_COMPLETE:
            cache = self.read_cache()
            key = group_key(spec_fp, exec_fp)
            if int(cache.get(key, {}).get("variant", 0)) <= variant:
                cache[key] = {"variant": variant, "path": str(path), "checkpoint": record.checkpoint}
                write_json_atomic(self.root / CACHE_FILE, cache)
        return record
