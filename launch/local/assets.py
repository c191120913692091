"""Registered data assets and environments of the local workspace, immutable per version.

The rule is Azure ML's: a name + version, once registered, never changes. Registering it again
with the same content fingerprint reuses it; with another fingerprint it is refused, asking for
the next free version.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from launch.errors import LaunchError
from launch.jobs import AssetRef, DataAssetSpec, EnvironmentSpec
from launch.local.workspace import LocalWorkspace, write_json_atomic

ASSET_RECORD = "asset.json"
ASSET_DATA_DIR = "data"


def _next_version(existing: list[str], current: str) -> str:
    numbers = [int(v) for v in [*existing, current] if v.isdigit()]
    return str(max(numbers) + 1) if numbers else f"{current}-2"


def _registered(
    kind: str, name: str, version: str, fingerprint: str, record_path: Path, siblings: Callable[[], list[str]]
) -> AssetRef | None:
    """The registered `name:version` when its record holds `fingerprint`; None when not registered.

    Raises:
        LaunchError: The version is registered with another fingerprint (the fix names the next
            free version among `siblings()`, the versions registered under `name`).
    """
    if not record_path.is_file():
        return None
    old = json.loads(record_path.read_text(encoding="utf-8"))["fingerprint"]
    if old != fingerprint:
        suggestion = _next_version(siblings(), version)
        raise LaunchError(
            f"{kind} {name}:{version} is already registered with other content "
            f"(fingerprint {old[:12]}..., now {fingerprint[:12]}...); registered versions are immutable",
            path=record_path,
            field="version",
            fix=f"register the changed {kind} as a new version, e.g. version: '{suggestion}'",
        )
    return AssetRef(name, version, fingerprint)


class LocalAssetRegistry:
    """Data assets and environments stored in a `LocalWorkspace`.

    Args:
        workspace: The workspace to store them in.
    """

    def __init__(self, workspace: LocalWorkspace) -> None:
        self.workspace = workspace

    # --- data assets ---------------------------------------------------------------------------
    def data_asset_path(self, name: str, version: str) -> Path:
        """Folder of a registered dataset version (what jobs read as `${{inputs.data}}`).

        Raises:
            LaunchError: That name + version is not registered.
        """
        folder = self.workspace.data_assets_dir / name / version
        if not (folder / ASSET_RECORD).is_file():
            raise LaunchError(
                f"data asset {name}:{version} is not registered in the local workspace",
                path=self.workspace.data_assets_dir,
                fix="run the pipeline's data_asset step first",
            )
        return folder / ASSET_DATA_DIR

    def ensure_data_asset(self, spec: DataAssetSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Copy the dataset folder into the workspace as `name:version`, or reuse it.

        Returns:
            The reference and whether an existing registration was reused.

        Raises:
            LaunchError: The version exists with another fingerprint, or the source is missing.
        """
        source = Path(spec.source_dir)
        if not source.is_dir():
            raise LaunchError(
                "the dataset folder to register does not exist",
                path=source,
                field="dataset.source_dir",
                fix="point dataset.source_dir at a folder in the canonical layout (train.jsonl, validation.jsonl)",
            )
        parent = self.workspace.data_assets_dir / spec.name
        target = parent / spec.version
        record_path = target / ASSET_RECORD
        existing = _registered(
            "data asset",
            spec.name,
            spec.version,
            fingerprint,
            record_path,
            siblings=lambda: [p.name for p in parent.iterdir() if p.is_dir()],
        )
        if existing is not None:
            return existing, True
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.version}.staging-", dir=parent))
        try:
            shutil.copytree(source, staging / ASSET_DATA_DIR)
            write_json_atomic(
                staging / ASSET_RECORD,
                {
                    "name": spec.name,
                    "version": spec.version,
                    "fingerprint": fingerprint,
                    "source_dir": str(source.absolute()),
                    "description": spec.description,
                },
            )
            if target.exists():  # a half-registered leftover without its record
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return AssetRef(spec.name, spec.version, fingerprint), False

    # --- environments --------------------------------------------------------------------------
    def ensure_environment(self, spec: EnvironmentSpec, fingerprint: str) -> tuple[AssetRef, bool]:
        """Record an environment version (locally jobs run in the current interpreter), or reuse it.

        Raises:
            LaunchError: The version exists with another fingerprint.
        """
        parent = self.workspace.environments_dir / spec.name
        record_path = parent / f"{spec.version}.json"
        existing = _registered(
            "environment",
            spec.name,
            spec.version,
            fingerprint,
            record_path,
            siblings=lambda: [p.stem for p in parent.glob("*.json")],
        )
        if existing is not None:
            return existing, True
        write_json_atomic(
            record_path,
            {
                "name": spec.name,
                "version": spec.version,
                "fingerprint": fingerprint,
                "image": spec.image,
                "conda_file": spec.conda_file,
                "description": spec.description,
            },
        )
        return AssetRef(spec.name, spec.version, fingerprint), False
