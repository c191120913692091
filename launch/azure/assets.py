"""The dataset version as an Azure ML `uri_folder` data asset (Phase 1 step P1-3.2).

The source folder is validated locally first; registration is by name + version with the
content fingerprint as a tag. Uploading is idempotent: the SDK uploads a local folder to a
content-addressed path of the default datastore, and a version that already exists with the
same fingerprint is reused without uploading at all. Jobs then reference `azureml:<name>:<version>`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launch.azure.versions import ensure_version
from launch.configs import LoadedConfig, load_config
from launch.errors import LaunchError
from launch.jobs import AssetRef, DataAssetSpec
from ner_lightning.contract import REQUIRED_SPLITS, SPLIT_FILES, TAG_DATASET_FINGERPRINT


def parse_data_asset(config: LoadedConfig) -> DataAssetSpec:
    """Read `configs/azure/data.yaml` (name, version, source_dir relative to the file).

    Raises:
        LaunchError: A field is missing (names the field).
    """
    values = {}
    for key in ("name", "version", "source_dir"):
        value = config.get(key)
        if value is None or not str(value).strip():
            raise config.error(f"{key} is missing", field=key, fix=f"set {key} in {config.name}")
        values[key] = str(value).strip()
    source = Path(values["source_dir"]).expanduser()
    if not source.is_absolute():
        source = (config.path.parent / source).resolve()
    return DataAssetSpec(
        name=values["name"],
        version=values["version"],
        source_dir=str(source),
        description=str(config.get("description", "") or ""),
    )


def load_data_asset(path: str | Path) -> DataAssetSpec:
    """Load `configs/azure/data.yaml` (see `parse_data_asset`)."""
    return parse_data_asset(load_config(path))


def validate_source_folder(source_dir: str | Path) -> None:
    """Validate a dataset folder locally before it is registered.

    Runs the data package's validator (`ner_lightning.data.validate`, torch-free): file presence,
    readability, token/label alignment, IOB2, manifest hashes.

    Raises:
        LaunchError: The folder or a required split is missing, or the validator found errors
            (each with its file, line and fix).
    """
    folder = Path(source_dir)
    if not folder.is_dir():
        raise LaunchError(
            "the dataset folder to register does not exist",
            path=folder,
            field="source_dir",
            fix="run `ner-data convert` to write it, or fix source_dir in configs/azure/data.yaml",
        )
    missing = [SPLIT_FILES[split] for split in REQUIRED_SPLITS if not (folder / SPLIT_FILES[split]).is_file()]
    if missing:
        raise LaunchError(
            f"the dataset folder lacks {', '.join(missing)}",
            path=folder,
            field="source_dir",
            fix="point source_dir at a folder in the canonical layout (see docs/architecture.md)",
        )
    from ner_lightning.data.validate import validate_folder

    report = validate_folder(folder)
    if not report.ok:
        listed = "\n".join(f"  - {issue}" for issue in report.errors[:10])
        raise LaunchError(
            f"the dataset folder failed validation ({len(report.errors)} error kind(s)):\n{listed}\n",
            path=folder,
            field="source_dir",
            fix="fix the listed lines (or re-run `ner-data convert`), then register again; nothing was uploaded",
        )


def register_data_asset(ml_client: Any, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
    """Register `spec` as a `uri_folder` data asset, or reuse the version when the content matches.

    Args:
        ml_client: An `azure.ai.ml.MLClient`.
        spec: Name, version and local source folder.
        fingerprint: Content fingerprint of the folder (from its manifest).

    Returns:
        The asset reference (with the fingerprint) and whether an existing version was reused.

    Raises:
        LaunchError: The folder is invalid, or the version exists with another fingerprint.
    """
    if not fingerprint:
        raise LaunchError(
            "no content fingerprint for the dataset",
            field="fingerprint",
            fix="compute it from the dataset manifest",
        )
    if not spec.source_dir.startswith("azureml://"):
        # A job's output (data preparation) is registered by URI; the caller validates a download.
        validate_source_folder(spec.source_dir)
    return register_folder_asset(ml_client, spec, fingerprint)


def register_folder_asset(ml_client: Any, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
    """Register a folder (local, or an `azureml://` job output) as a `uri_folder` asset, or reuse it.

    The fingerprint of the content is the registered version's tag; the same name + version with
    another fingerprint is refused (see `launch.azure.versions.ensure_version`).

    Raises:
        LaunchError: The version exists with another fingerprint.
    """

    def create() -> Any:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        data = Data(
            name=spec.name,
            version=spec.version,
            type=AssetTypes.URI_FOLDER,
            path=spec.source_dir,
            description=spec.description,
            tags={TAG_DATASET_FINGERPRINT: fingerprint},
        )
        return ml_client.data.create_or_update(data)

    _, reused = ensure_version(
        ml_client.data,
        kind="data asset",
        name=spec.name,
        version=spec.version,
        fingerprint=fingerprint,
        fingerprint_tag=TAG_DATASET_FINGERPRINT,
        create=create,
    )
    return AssetRef(name=spec.name, version=spec.version, fingerprint=fingerprint), reused
