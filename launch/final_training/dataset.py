"""Which dataset a final run trains on, where its outputs may live, and where its backbone is.

The pipeline hands the registered dataset over directly (`ResolvedDataset`); the standalone
loader resolves it from a local folder override, an explicit data config inside `configs/`, or the
experiment's data config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from launch.configs import load_config
from launch.final_training.resolved import ResolvedDataset
from launch.fingerprints import dataset_fingerprint
from ner_lightning.errors import ConfigError


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` resolves to a place inside `folder`."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def check_output_root(root: str, root_dir: Path, config_path: Path, line: int | None) -> None:
    """Refuse an `output.root` that resolves outside the project (`..`, an absolute path elsewhere).

    Variant folders, the index and the cache are written and rewritten under that root; one outside
    the project could overwrite someone else's files.
    """
    if not inside(root_dir / root, root_dir):
        raise ConfigError(
            f"output.root {root!r} resolves to {(root_dir / root).resolve()}, outside the project {root_dir.resolve()}",
            path=config_path,
            line=line,
            field="output.root",
            fix="use a folder inside the project, e.g. outputs/final_training",
        )


def dataset_labels(folder: Path) -> tuple[str, ...]:
    from ner_lightning.data.records import load_dataset_folder, read_labels

    labels = read_labels(folder)
    return tuple(labels if labels is not None else load_dataset_folder(folder).labels)


def _from_data_config(
    root_dir: Path, config_dir: Path, relative: str, field_name: str, settings_path: Path | None
):
    path = Path(relative)
    path = path if path.is_absolute() else config_dir / path
    if not inside(path, config_dir):
        raise ConfigError(
            f"data config {relative!r} is outside {config_dir}",
            path=settings_path,
            field=field_name,
            fix=f"put the data config under {config_dir} and give its path relative to it (e.g. data/my_data.yaml)",
        )
    if not path.is_file():
        raise ConfigError(
            f"data config {relative!r} does not exist ({path})",
            path=settings_path,
            field=field_name,
            fix=f"create it under {config_dir} or fix the path",
        )
    data = load_config(path).data
    if not isinstance(data, Mapping):
        data = {}
    facts = data.get("dataset") or data.get("data_asset") or data
    local = next(
        (facts.get(key) for key in ("local_path", "source_dir", "path", "data_dir") if facts.get(key)), None
    )
    if not facts.get("name") or local is None:
        raise ConfigError(
            "a data config needs `name` and `local_path` (the dataset folder)",
            path=path,
            fix="write name: <asset name>, version: <version>, local_path: <folder>",
        )
    local_path = Path(str(local))
    local_path = local_path if local_path.is_absolute() else root_dir / local_path
    return (
        str(facts["name"]),
        str(facts.get("version", "1")),
        local_path,
        path.relative_to(config_dir).as_posix(),
    )


def resolve_dataset(
    root_dir: Path,
    config_dir: Path,
    experiment_config: Mapping[str, Any],
    dataset_settings: Mapping[str, Any],
    settings_path: Path | None = None,
) -> ResolvedDataset:
    """Resolve the dataset: local path override, else explicit data config, else the experiment's.

    Args:
        root_dir: Project root (relative dataset paths are relative to it).
        config_dir: `configs/` (data configs must live inside it).
        experiment_config: Experiment config holding `data_config` (relative to config_dir).
        dataset_settings: The YAML `dataset` section.
        settings_path: final_training.yaml, for error messages.

    Returns:
        The dataset with its content fingerprint and label set.
    """
    name = version = data_config = None
    local_path: Path | None = None
    explicit = dataset_settings.get("data_config")
    chosen = explicit or experiment_config.get("data_config")
    if chosen:
        field_name = "dataset.data_config" if explicit else "experiment.data_config"
        name, version, local_path, data_config = _from_data_config(
            root_dir, config_dir, str(chosen), field_name, settings_path
        )
    override = dataset_settings.get("local_path_override")
    if override:
        local_path = Path(override) if Path(override).is_absolute() else root_dir / override
    if local_path is None:
        raise ConfigError(
            "no dataset: neither dataset.data_config, dataset.local_path_override nor the experiment's data_config is set",
            path=settings_path,
            field="dataset",
            fix="set dataset.data_config (relative to configs/) or dataset.local_path_override",
        )
    if not local_path.is_dir():
        raise ConfigError(
            f"dataset folder {local_path} does not exist",
            path=settings_path,
            field="dataset.local_path_override" if override else "dataset.data_config",
            fix="point at a folder with train.jsonl and validation.jsonl",
        )
    return ResolvedDataset(
        name=name or local_path.name,
        version=version or "local",
        fingerprint=dataset_fingerprint(local_path),
        local_path=str(local_path),
        data_config=data_config,
        labels=dataset_labels(local_path),
    )


def portable_backbone(backbone: str, root_dir: Path) -> str:
    """Project-relative spelling of a backbone path inside the project (fingerprints travel)."""
    path = Path(backbone)
    if path.is_absolute() and inside(path, root_dir):
        return path.resolve().relative_to(root_dir.resolve()).as_posix()
    return backbone


def local_backbone(backbone: str, root_dir: Path) -> Path | None:
    """The backbone's local folder when it names one (its config.json gives the architecture)."""
    if backbone.startswith("pkg:"):
        from ner_lightning.resources import resolve_path

        try:
            return Path(resolve_path(backbone))
        except Exception:  # not installed here: the job itself checks the architecture
            return None
    for candidate in (root_dir / backbone, Path(backbone)):
        if candidate.is_dir():
            return candidate
    return None
