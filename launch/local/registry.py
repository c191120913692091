"""The workspace's registries and resources behind `ml_client.data/.environments/.models/.compute/...`.

Azure ML semantics, kept in `<workspace>/registry/<kind>/<name>/<version>.yaml` (the entity's
own YAML): a name + version is immutable; `create_or_update` with identical content returns the
registered version (idempotent), with other content it is refused (HTTP 409 on Azure); a model
without a version gets the next integer. Content given as a local folder or file is uploaded to
the default datastore first, a job output (`azureml://jobs/...`) is copied from the job, so a
registered version keeps its content even when the source changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from launch.local.snapshot import upload
from launch.local.workspace import DEFAULT_DATASTORE, LocalWorkspace

_LOCK = threading.Lock()


class _Poller:
    """The long-running-operation poller the SDK's `begin_*` methods return."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def result(self, timeout: float | None = None) -> Any:
        """The operation's result (already done)."""
        return self._value

    def done(self) -> bool:
        """Always True: emulated operations complete at once."""
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Nothing to wait for."""


def _not_found(message: str) -> Exception:
    from azure.core.exceptions import ResourceNotFoundError

    return ResourceNotFoundError(message=message)


def _conflict(message: str) -> Exception:
    from azure.core.exceptions import ResourceExistsError

    return ResourceExistsError(message=message)


def _dump_atomic(entity: Any, path: Path) -> None:
    """Write the entity's YAML beside `path` and move it into place: a killed process never leaves half
    a registry record (which every later read of the name would fail on)."""
    partial = path.with_name(f"{path.name}.partial")
    try:
        entity.dump(str(partial))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _yaml_dict(entity: Any) -> dict[str, Any]:
    """The entity as the plain mapping its YAML holds."""
    return json.loads(json.dumps(entity._to_dict(), default=str))


class VersionedOperations:
    """`ml_client.data`, `ml_client.environments` or `ml_client.models` of the emulated workspace.

    Args:
        workspace: The workspace folder.
        kind: `data`, `environments` or `models`.
        resolve: Resolves an `azureml://` URI to a local path (job outputs, datastore paths).
    """

    _LOADERS: Mapping[str, str] = MappingProxyType(
        {"data": "load_data", "environments": "load_environment", "models": "load_model"}
    )
    _KIND_NAMES: Mapping[str, str] = MappingProxyType(
        {"data": "data asset", "environments": "environment", "models": "model"}
    )

    def __init__(self, workspace: LocalWorkspace, kind: str, resolve: Callable[[str], Path]) -> None:
        self.workspace = workspace
        self.kind = kind
        self._resolve = resolve

    @property
    def _root(self) -> Path:
        return self.workspace.registry_dir / self.kind

    def _file(self, name: str, version: str) -> Path:
        return self._root / name / f"{version}.yaml"

    def _load(self, path: Path) -> Any:
        import azure.ai.ml as sdk

        return getattr(sdk, self._LOADERS[self.kind])(source=str(path))

    def _versions(self, name: str) -> list[str]:
        folder = self._root / name
        if not folder.is_dir():
            return []
        return sorted(
            (p.stem for p in folder.glob("*.yaml")),
            key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0, v),
        )

    def get(self, name: str, version: str | None = None, label: str | None = None, **_: Any) -> Any:
        """The registered version (`label="latest"` or no version: the newest).

        Raises:
            ResourceNotFoundError: No such name or version.
        """
        versions = self._versions(name)
        if version is None:
            if not versions:
                raise _not_found(f"{self._KIND_NAMES[self.kind]} {name} does not exist in the workspace")
            version = versions[-1]
        path = self._file(name, str(version))
        if not path.is_file():
            raise _not_found(
                f"{self._KIND_NAMES[self.kind]} {name}:{version} does not exist in the workspace"
                + (f" (registered versions: {', '.join(versions)})" if versions else "")
            )
        return self._load(path)

    def list(self, name: str | None = None, **_: Any) -> Iterator[Any]:
        """Every version of `name` (or the newest of every name)."""
        if name is not None:
            return iter([self._load(self._file(name, v)) for v in self._versions(name)])
        names = sorted(p.name for p in self._root.iterdir()) if self._root.is_dir() else []
        return iter([self.get(n) for n in names if self._versions(n)])

    def _content(self, entity: Any) -> str:
        """Upload the entity's content and point it at the datastore; returns the content fingerprint."""
        if self.kind == "environments":
            conda = entity.conda_file
            if isinstance(conda, (str, Path)):
                from launch.configs import load_config, thaw

                conda = thaw(load_config(conda).data)
                entity.conda_file = conda
            payload = {"image": entity.image, "conda": conda, "build": str(getattr(entity, "build", None))}
            return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        path = str(entity.path)
        if path.startswith("azureml://datastores/"):
            local = self._resolve(path)
        elif path.startswith("azureml:"):
            local = self._resolve(path)
            entity.path = upload(self.workspace, local)
        else:
            local = Path(path).expanduser().resolve()
            if not local.exists():
                raise _not_found(f"path {path} of {self._KIND_NAMES[self.kind]} {entity.name} does not exist")
            entity.path = upload(self.workspace, local)
        digest = entity.path.split("/paths/", 1)[-1]
        return hashlib.sha256(f"{entity.type}\0{digest}".encode()).hexdigest()

    def create_or_update(self, entity: Any, **_: Any) -> Any:
        """Register `entity`; identical content returns the registered version, other content is refused.

        Raises:
            ResourceExistsError: The name + version exists with other content.
        """
        if entity.version is not None:
            path = self._file(entity.name, str(entity.version))
            if path.is_file() and str(self._load(path).path) == str(entity.path):
                # A tag or description edit of a registered version (e.g. prod -> archived): as on
                # Azure ML its content is not read again, so it works even when the content is gone.
                with _LOCK:
                    entity.dump(str(path))
                return self._load(path)
        fingerprint = self._content(entity)
        with _LOCK:
            if entity.version is None:
                if self.kind != "models":
                    entity.version = "1"
                else:
                    numbers = [int(v) for v in self._versions(entity.name) if v.isdigit()]
                    entity.version = str(max(numbers, default=0) + 1)
            path = self._file(entity.name, str(entity.version))
            stamp = path.with_suffix(".fingerprint")
            if path.is_file():
                existing = self._load(path)
                if stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == fingerprint:
                    # Same content: as on Azure ML, tags and description of a version stay editable.
                    if (dict(entity.tags or {}), entity.description) != (
                        dict(existing.tags or {}),
                        existing.description,
                    ):
                        _dump_atomic(entity, path)
                        return self._load(path)
                    return existing
                raise _conflict(
                    f"{self._KIND_NAMES[self.kind]} {entity.name}:{entity.version} already exists with other "
                    "content; registered versions are immutable: register the new content as a new version"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            stamp.write_text(fingerprint + "\n", encoding="utf-8")
            _dump_atomic(entity, path)
        return self._load(path)

    def download(self, name: str, version: str, download_path: str | Path = ".", **_: Any) -> None:
        """Copy a registered model's content to `download_path/<name>/` as the SDK lays it out.

        A folder lands in `<name>/<folder name>/`, a file in `<name>/`. Content that no longer exists
        in the datastore downloads nothing (as a download of missing blobs does on Azure ML).

        Raises:
            ResourceNotFoundError: No such name or version.
        """
        from launch.local.uris import UnresolvedReference

        uri = str(self.get(name, version).path)
        try:
            source = self._resolve(uri)
        except UnresolvedReference:
            return
        target = Path(download_path) / name
        target.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target / source.name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target / source.name)

    def local_path(self, name: str, version: str) -> Path:
        """The local folder or file holding a registered data asset's or model's content."""
        return self._resolve(str(self.get(name, version).path))


class ComputeOperations:
    """`ml_client.compute`: AmlCompute clusters stored as YAML (no nodes: jobs run on this machine)."""

    def __init__(self, workspace: LocalWorkspace) -> None:
        self.workspace = workspace

    def get(self, name: str, **_: Any) -> Any:
        """The cluster.

        Raises:
            ResourceNotFoundError: No such cluster.
        """
        from azure.ai.ml import load_compute

        path = self.workspace.compute_dir / f"{name}.yaml"
        if not path.is_file():
            raise _not_found(f"compute {name} does not exist in the workspace")
        return load_compute(source=str(path))

    def list(self, **_: Any) -> Iterator[Any]:
        """Every cluster."""
        folder = self.workspace.compute_dir
        return iter([self.get(p.stem) for p in sorted(folder.glob("*.yaml"))] if folder.is_dir() else [])

    def begin_create_or_update(self, compute: Any, **_: Any) -> _Poller:
        """Create or update a cluster."""
        self.workspace.compute_dir.mkdir(parents=True, exist_ok=True)
        compute.dump(str(self.workspace.compute_dir / f"{compute.name}.yaml"))
        return _Poller(self.get(compute.name))


class WorkspaceOperations:
    """`ml_client.workspaces`: one workspace whose MLflow server is the folder's SQLite store."""

    def __init__(self, workspace: LocalWorkspace, name: str) -> None:
        self.workspace = workspace
        self.name = name

    def get(self, name: str | None = None, **_: Any) -> Any:
        """The workspace entity (with `mlflow_tracking_uri`).

        Raises:
            ResourceNotFoundError: Another workspace name.
        """
        from azure.ai.ml.entities import Workspace

        if name not in (None, self.name):
            raise _not_found(f"workspace {name} does not exist (the emulated workspace is {self.name!r})")
        entity = Workspace(name=self.name, description=f"emulated workspace in {self.workspace.root}")
        entity._mlflow_tracking_uri = self.workspace.tracking_uri
        return entity


class DatastoreOperations:
    """`ml_client.datastores`: the default blob datastore, a folder of the workspace."""

    def __init__(self, workspace: LocalWorkspace) -> None:
        self.workspace = workspace

    def get_default(self, **_: Any) -> Any:
        """The default datastore entity."""
        from azure.ai.ml.entities import AzureBlobDatastore

        self.workspace.datastore_dir.mkdir(parents=True, exist_ok=True)
        return AzureBlobDatastore(
            name=DEFAULT_DATASTORE, account_name="emulated", container_name=str(self.workspace.datastore_dir)
        )
