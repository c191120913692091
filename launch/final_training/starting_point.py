"""The weights a new final-training variant starts from, found and checked before any job.

`scratch` starts from the pretrained backbone; `hpo_best` (with `checkpoint.load`) from the
selected trial's checkpoint that selection recorded; `final_training` (`continue_from_previous`)
from a parent final run: explicit (a path, a variant folder, `{spec_fp, exec_fp, variant}`) or the
latest complete run of the same model. A parent still running is refused, and so is a checkpoint
trained on other labels, another head or another backbone architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.checkpoint_resolution import (
    check_compatible,
    checkpoint_by_path,
    checkpoint_by_reference,
    init_identity,
    latest_related_run,
    resolve_checkpoint_from_fingerprints,
    validate_checkpoint,
)
from launch.final_training.decision import ACTIVE_STATUSES
from launch.final_training.resolved import ResolvedDataset
from launch.variants import VariantRecord, VariantStore, owned_by_another
from ner_lightning.errors import ConfigError


@dataclass(frozen=True)
class StartingPoint:
    """Where a new variant's weights come from.

    Attributes:
        checkpoint: The checkpoint (local path or azureml:// job output), or None (the backbone).
        resolved_by: How it was found, or None.
        parent: `{spec_fp, exec_fp, variant}` of the parent final run, or None.
        identity: What of it enters spec_fp, or None.
    """

    checkpoint: str | None = None
    resolved_by: str | None = None
    parent: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None


def _still_running(record: VariantRecord | None, field_name: str, config_path: Path | None) -> None:
    if record is not None and record.status in ACTIVE_STATUSES and owned_by_another(record):
        raise ConfigError(
            f"the parent final run v{record.variant} (spec_{record.spec_fp}_exec_{record.exec_fp}) is still "
            "running: continue_from_previous needs its final checkpoint",
            path=config_path,
            field=field_name,
            fix="wait for the parent run to complete, then run again (or name a complete parent in source.parent)",
        )


def _explicit_record(store: VariantStore, root_dir: Path, explicit: Any) -> VariantRecord | None:
    if isinstance(explicit, Mapping) and explicit.get("variant") is not None:
        return store.find(explicit["spec_fp"], explicit["exec_fp"], explicit["variant"])
    if isinstance(explicit, str):
        path = Path(explicit) if Path(explicit).is_absolute() else root_dir / explicit
        if path.is_dir():
            try:
                return store.read_record(path)
            except Exception:
                return None
    return None


def resolve_starting_point(
    settings: Mapping[str, Any],
    *,
    store: VariantStore,
    root_dir: Path,
    best_config: Mapping[str, Any],
    base_spec_fp: str,
    exec_fp: str,
    backbone: str,
    dataset: ResolvedDataset,
    crf: bool,
    architecture: Mapping[str, Any] | None,
    config_path: Path | None,
    locate: Callable[[str], Path | None] | None = None,
) -> StartingPoint:
    """Find and check the checkpoint a new variant starts from (see the module docstring).

    Args:
        settings: Validated final_training.yaml settings.
        store: The backend's variant store.
        root_dir: Project root (relative paths).
        best_config: Selection's best configuration (`checkpoint`: the selected trial's).
        base_spec_fp: spec_fp of the same model before the YAML overrides (automatic parent lookup).
        exec_fp: Exec fingerprint.
        backbone: Backbone reference.
        dataset: The dataset (labels and content fingerprint).
        crf: Whether this run trains a CRF head.
        architecture: This run's backbone architecture keys, or None.
        config_path: final_training.yaml, for messages.
        locate: Maps a job-output reference to a local file (to check it), or None.

    Raises:
        ConfigError: No parent found, a parent still running, a missing or foreign checkpoint, or
            one trained on other labels, head or backbone architecture.
    """
    ckpt, source_type = settings["checkpoint"], settings["source"]["type"]
    load = ckpt["load"] if ckpt["load"] is not None else source_type != "scratch"
    if source_type == "final_training":
        load = True
    if not load:
        return StartingPoint()
    explicit = ckpt["source"] if ckpt["source"] is not None else settings["source"]["parent"]
    field_name = "checkpoint.source" if ckpt["source"] is not None else "source.parent"
    checkpoint: str | None = None
    resolved_by: str | None = None
    parent: dict[str, Any] | None = None
    if explicit is not None:
        _still_running(_explicit_record(store, root_dir, explicit), field_name, config_path)
    if isinstance(explicit, Mapping):
        checkpoint, parent = checkpoint_by_reference(store, explicit, field_name, config_path)
        resolved_by = "fingerprints"
    elif isinstance(explicit, str):
        checkpoint, parent = checkpoint_by_path(root_dir, store, explicit)
        resolved_by = "explicit"
    elif source_type == "hpo_best":
        checkpoint = best_config.get("checkpoint")
        resolved_by = "hpo_best" if checkpoint else None
    else:
        running = [
            r
            for r in store.scan(exec_fp=exec_fp)
            if r.status in ACTIVE_STATUSES
            and owned_by_another(r)
            and r.metadata.get("backbone") == backbone
            and (r.metadata.get("dataset") or {}).get("fingerprint") == dataset.fingerprint
        ]
        if running:
            _still_running(running[-1], "run.mode", config_path)
        checkpoint, resolved_by, parent = resolve_checkpoint_from_fingerprints(store, base_spec_fp, exec_fp)
        if checkpoint is None:
            checkpoint, resolved_by, parent = latest_related_run(
                store, exec_fp, backbone, dataset.fingerprint
            )
    if source_type == "final_training" and checkpoint is None:
        raise ConfigError(
            f"no complete previous final run found under {store.root} to continue from",
            path=config_path,
            field="source.parent",
            fix="run a first final training, or set source.parent to a variant folder or {spec_fp, exec_fp, variant}",
        )
    if checkpoint is None:
        return StartingPoint()
    local: Path | None = None
    if checkpoint.startswith("azureml://"):
        local = locate(checkpoint) if locate is not None else None
    else:
        local = Path(checkpoint)
    if local is not None and ckpt["validate"]:
        where = field_name if explicit is not None else "checkpoint.source"
        validate_checkpoint(local, where, config_path)
        check_compatible(
            str(local),
            labels=dataset.labels,
            crf=crf,
            architecture=architecture,
            field_name=where,
            settings_path=config_path,
        )
    return StartingPoint(checkpoint, resolved_by, parent, init_identity(checkpoint, parent))
