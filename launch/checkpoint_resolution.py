"""Checkpoint resolution for final training: find and check the checkpoint a run starts from.

Final runs are found in the backend's variant store (launch/variants.py) by fingerprints
(index -> metadata -> cache), by an explicit `{spec_fp, exec_fp, variant}` reference, by a path
(a .ckpt file or a variant folder), or as the latest related complete run. `init_identity` says
what of the starting checkpoint enters `spec_fp`.

Torch-free: checkpoints are recognised by opening the zip that `torch.save` writes and looking
for the `ner_lightning` key in its pickle, never by loading it.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launch.fingerprints import file_sha256
from launch.variants import STATUS_COMPLETE, VariantRecord, VariantStore
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR
from ner_lightning.errors import ConfigError


def validate_checkpoint(
    path: str | Path, field_name: str = "checkpoint.source", settings_path: Path | None = None
) -> Path:
    """Check that `path` is a ner-lightning checkpoint without loading it (no torch).

    A Lightning checkpoint is the zip archive `torch.save` writes; ours carries the key
    `ner_lightning` in its pickle (`<archive>/data.pkl`).

    Raises:
        ConfigError: The file is missing, not a torch zip archive, or not ours.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {path} does not exist",
            path=settings_path,
            field=field_name,
            fix="give an existing .ckpt file, use {spec_fp, exec_fp, variant}, or set checkpoint.validate: false",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"
            ]
            ours = any(b"ner_lightning" in archive.read(name) for name in pickles)
    except (zipfile.BadZipFile, OSError) as error:
        raise ConfigError(
            f"{path} is not a PyTorch checkpoint ({error})",
            path=settings_path,
            field=field_name,
            fix="point at a .ckpt written by `python -m ner_lightning fit`",
        ) from error
    if not ours:
        raise ConfigError(
            f"{path} is not a ner-lightning checkpoint (no 'ner_lightning' entry)",
            path=settings_path,
            field=field_name,
            fix="point at a .ckpt written by `python -m ner_lightning fit`",
        )
    return path


def variant_checkpoint(record: VariantRecord) -> str | None:
    """The final checkpoint of a variant: the recorded one, else `<output_dir>/checkpoints/best.ckpt`.

    Args:
        record: The variant's record.

    Returns:
        The checkpoint path, or None when the variant has none.
    """
    if record.checkpoint:
        return record.checkpoint
    output_dir = Path(str(record.metadata.get("output_dir") or record.path))
    best = output_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
    return str(best) if best.is_file() else None


def resolve_checkpoint_from_fingerprints(
    store: VariantStore, spec_fp: str, exec_fp: str
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """Find the latest complete final run of a fingerprint pair: index -> metadata -> cache -> none.

    Args:
        store: The backend's variant store.
        spec_fp: Spec fingerprint to look up.
        exec_fp: Exec fingerprint to look up.

    Returns:
        (checkpoint path, how it was found, `{spec_fp, exec_fp, variant}` of the run), or
        (None, None, None).
    """
    for how, lookup in (
        ("index", store.lookup_index),
        ("metadata", store.lookup_metadata),
        ("cache", store.lookup_cache),
    ):
        found = lookup(spec_fp, exec_fp)
        if found and found.get("checkpoint"):
            return (
                found["checkpoint"],
                how,
                {"spec_fp": spec_fp, "exec_fp": exec_fp, "variant": found["variant"]},
            )
    return None, None, None


def latest_related_run(
    store: VariantStore, exec_fp: str, backbone: str, dataset_fingerprint: str
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """Latest complete run (by finish time) with the same exec_fp, backbone and dataset content.

    The fallback when the parent was itself trained with overrides, so its spec_fp cannot be
    recomputed from the best configuration alone.

    Args:
        store: The backend's variant store.
        exec_fp: Exec fingerprint the run must share.
        backbone: Backbone reference the run must share.
        dataset_fingerprint: Dataset content fingerprint the run must share.

    Returns:
        (checkpoint path, "metadata", `{spec_fp, exec_fp, variant}` of the run), or
        (None, None, None).
    """
    related = [
        record
        for record in store.scan(exec_fp=exec_fp)
        if record.status == STATUS_COMPLETE
        and record.metadata.get("backbone") == backbone
        and (record.metadata.get("dataset") or {}).get("fingerprint") == dataset_fingerprint
        and variant_checkpoint(record)
    ]
    if not related:
        return None, None, None
    record = max(related, key=lambda r: (str(r.metadata.get("finished_at", "")), r.variant))
    parent = {"spec_fp": record.spec_fp, "exec_fp": record.exec_fp, "variant": record.variant}
    return variant_checkpoint(record), "metadata", parent


def checkpoint_by_reference(
    store: VariantStore, ref: Mapping[str, Any], field_name: str, settings_path: Path | None
) -> tuple[str, dict[str, Any]]:
    """The final checkpoint of the complete run named by `{spec_fp, exec_fp, variant}`.

    Args:
        store: The backend's variant store.
        ref: The reference; `variant: null` takes the latest complete variant.
        field_name: YAML field the reference came from (for error messages).
        settings_path: final_training.yaml, for error messages.

    Returns:
        (checkpoint path, `{spec_fp, exec_fp, variant}` of the run).

    Raises:
        ConfigError: No such run, or it is not complete.
    """
    spec_fp, exec_fp, variant = ref["spec_fp"], ref["exec_fp"], ref.get("variant")
    if variant is None:
        checkpoint, _, parent = resolve_checkpoint_from_fingerprints(store, spec_fp, exec_fp)
        if checkpoint is None or parent is None:
            raise ConfigError(
                f"no complete final run with spec_fp {spec_fp} and exec_fp {exec_fp} under {store.root}",
                path=settings_path,
                field=field_name,
                fix="check the fingerprints (see metadata.json of the run) or give variant: N",
            )
        return checkpoint, parent
    record = store.find(spec_fp, exec_fp, variant)
    checkpoint = variant_checkpoint(record) if record else None
    if record is None or record.status != STATUS_COMPLETE or checkpoint is None:
        state = "does not exist" if record is None else f"is {record.status}"
        raise ConfigError(
            f"final run spec_{spec_fp}_exec_{exec_fp}/v{variant} {state} under {store.root}",
            path=settings_path,
            field=field_name,
            fix="name a complete variant (see index.json) or a checkpoint path",
        )
    return checkpoint, {"spec_fp": spec_fp, "exec_fp": exec_fp, "variant": variant}


def checkpoint_by_path(root_dir: Path, store: VariantStore, text: str) -> tuple[str, dict[str, Any] | None]:
    """An explicit path: a .ckpt file or a variant folder (its final checkpoint).

    Args:
        root_dir: Project root (a relative path is relative to it).
        store: The backend's variant store (reads a variant folder's metadata).
        text: The path as written in the YAML.

    Returns:
        (checkpoint path, `{spec_fp, exec_fp, variant}` of the variant or None for a plain file).
    """
    path = Path(text) if Path(text).is_absolute() else root_dir / text
    if path.is_dir():
        try:
            record = store.read_record(path)
        except Exception:
            record = None
        if record is not None:
            checkpoint = variant_checkpoint(record)
            parent = {"spec_fp": record.spec_fp, "exec_fp": record.exec_fp, "variant": record.variant}
            return checkpoint or str(path), parent
    return str(path), None


def init_identity(checkpoint: str, parent: Mapping[str, Any] | None) -> dict[str, Any]:
    """What enters spec_fp for the starting checkpoint: the parent run, else the file's digest.

    Args:
        checkpoint: The starting checkpoint.
        parent: `{spec_fp, exec_fp, variant}` of the run it came from, or None.

    Returns:
        The parent reference, else `{"sha256": ...}` of the file, else `{"path": ...}`.
    """
    if parent:
        return dict(parent)
    path = Path(checkpoint)
    if path.is_file():
        return {"sha256": file_sha256(path)}
    return {"path": checkpoint}


# --- what a checkpoint was trained on (torch-free) --------------------------------------------
#: Backbone config keys that define the architecture (ner_lightning.model.module compares the same).
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
)


class _Opaque(dict):
    """Stands for every object of a checkpoint's pickle that is not plain data (tensors, torch types)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Opaque:
        return dict.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self)

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _PlainDataUnpickler(pickle.Unpickler):
    """Reads the plain data of a checkpoint's pickle; never imports or calls anything else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        return _Opaque

    def persistent_load(self, pid: Any) -> Any:
        return None


def checkpoint_identity(path: str | Path) -> dict[str, Any] | None:
    """The `ner_lightning` record of a checkpoint (labels, backbone, backbone config, head), torch-free.

    Args:
        path: A `.ckpt` file (the zip archive `torch.save` writes).

    Returns:
        `{"label_names", "backbone", "backbone_config", "head"}` (as stored), or None when the file
        cannot be read this way (the job itself still checks it when it loads the weights).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            data = _PlainDataUnpickler(io.BytesIO(archive.read(name))).load()
    except Exception:  # any unreadable file: the training job reports it precisely
        return None
    record = data.get("ner_lightning") if isinstance(data, dict) else None
    return dict(record) if isinstance(record, dict) else None


def backbone_architecture(folder: str | Path | None) -> dict[str, Any] | None:
    """The architecture keys of a local backbone folder's config.json, or None when unknown."""
    if folder is None:
        return None
    config = Path(folder) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {key: data.get(key) for key in ARCHITECTURE_KEYS if key in data}


def check_compatible(
    checkpoint: str,
    *,
    labels: tuple[str, ...],
    crf: bool,
    architecture: Mapping[str, Any] | None,
    field_name: str,
    settings_path: Path | None,
) -> None:
    """Refuse a starting checkpoint trained on other labels, another head or another backbone architecture.

    Args:
        checkpoint: A local `.ckpt` file.
        labels: The label set of the dataset this run trains on.
        crf: Whether this run trains a CRF head.
        architecture: This run's backbone architecture keys, or None when unknown (not compared).
        field_name: The final_training.yaml field the checkpoint came from.
        settings_path: final_training.yaml, for the message.

    Raises:
        ConfigError: Naming what differs and the fix.
    """
    identity = checkpoint_identity(checkpoint)
    if identity is None:
        return
    fix = "start from a checkpoint of the same labels, head and backbone, or use source.type: scratch"
    theirs = list(identity.get("label_names") or [])
    if labels and theirs and theirs != list(labels):
        raise ConfigError(
            f"the starting checkpoint {checkpoint} was trained on labels {theirs}, this run trains on {list(labels)}",
            path=settings_path,
            field=field_name,
            fix=fix,
        )
    head = identity.get("head") or {}
    their_crf = (
        "crf" in str(head.get("class_path", "")).rsplit(".", 1)[-1].lower()
        if isinstance(head, dict) and head
        else bool(identity.get("use_crf"))
    )
    if their_crf != crf:
        raise ConfigError(
            f"the starting checkpoint {checkpoint} has a {'CRF' if their_crf else 'softmax'} head, "
            f"this run trains a {'CRF' if crf else 'softmax'} head",
            path=settings_path,
            field=field_name,
            fix=fix,
        )
    config = identity.get("backbone_config") or {}
    if architecture and isinstance(config, dict):
        differences = [
            f"{key}: checkpoint {config.get(key)!r} vs run {architecture.get(key)!r}"
            for key in ARCHITECTURE_KEYS
            if key in architecture and key in config and config.get(key) != architecture.get(key)
        ]
        if differences:
            raise ConfigError(
                f"the starting checkpoint {checkpoint} has another backbone architecture "
                f"({identity.get('backbone')}): {', '.join(differences)}",
                path=settings_path,
                field=field_name,
                fix=fix,
            )


__all__ = [
    "backbone_architecture",
    "check_compatible",
    "checkpoint_by_path",
    "checkpoint_by_reference",
    "checkpoint_identity",
    "init_identity",
    "latest_related_run",
    "resolve_checkpoint_from_fingerprints",
    "validate_checkpoint",
    "variant_checkpoint",
]
