"""The emulated Azure ML workspace's folder: MLflow store, registries, datastore, jobs.

Layout (everything the emulator writes lives under the workspace root)::

    <root>/mlflow.db                          MLflow tracking (SQLite), the workspace's MLflow server
    <root>/mlartifacts/                       MLflow artifacts
    <root>/datastores/workspaceblobstore/     the default datastore (uploads, registered asset content)
    <root>/registry/<kind>/<name>/<version>.yaml   data assets, environments, models (entity YAML)
    <root>/compute/<name>.yaml                compute clusters (AmlCompute YAML)
    <root>/codes/<content hash>/              code snapshots (SDK ignore-file rules)
    <root>/envs/<name>/<version>/             built environments (only the declared packages)
    <root>/jobs/<job name>/                   `job.yaml` (what runs), `status.json`, `user_logs/`, `outputs/`
    <root>/pipelines/                         pipeline state files (see launch/pipeline.py)
    <root>/workspace.lock                     held by a running pipeline
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from launch.errors import LaunchError

#: Default workspace folder, relative to the current directory.
DEFAULT_WORKSPACE = ".ner_workspace"
#: Name of the default datastore, as in every Azure ML workspace.
DEFAULT_DATASTORE = "workspaceblobstore"


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write `payload` as JSON next to `path` and move it into place, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalWorkspace:
    """The folder behind the emulated Azure ML workspace (`launch.local.client.EmulatedMLClient`).

    Args:
        root: Workspace folder; created when missing. Must be writable.
    """

    def __init__(self, root: str | Path = DEFAULT_WORKSPACE) -> None:
        self.root = Path(root).expanduser().absolute()

    # --- paths ---------------------------------------------------------------------------------
    @property
    def tracking_uri(self) -> str:
        """`sqlite:///<root>/mlflow.db`, the MLflow tracking and registry store of the workspace."""
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        """Where MLflow stores run artifacts."""
        return self.root / "mlartifacts"

    @property
    def datastore_dir(self) -> Path:
        """The default datastore `workspaceblobstore`."""
        return self.root / "datastores" / DEFAULT_DATASTORE

    @property
    def registry_dir(self) -> Path:
        """Registered data assets, environments and models (one YAML per version)."""
        return self.root / "registry"

    @property
    def compute_dir(self) -> Path:
        """Compute cluster definitions."""
        return self.root / "compute"

    @property
    def codes_dir(self) -> Path:
        """Code snapshots by content hash."""
        return self.root / "codes"

    @property
    def envs_dir(self) -> Path:
        """Built environments."""
        return self.root / "envs"

    @property
    def jobs_dir(self) -> Path:
        """One folder per job."""
        return self.root / "jobs"

    @property
    def pipelines_dir(self) -> Path:
        """Pipeline state files."""
        return self.root / "pipelines"

    @property
    def lock_path(self) -> Path:
        """The lock file a running pipeline holds."""
        return self.root / "workspace.lock"

    # --- checks --------------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Create the workspace folder if needed and prove it is writable.

        Raises:
            LaunchError: The folder cannot be created or written, naming it and the fix.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise LaunchError(
                f"the local workspace folder is not writable ({exc.strerror or exc})",
                path=self.root,
                field="workspace",
                fix="point `workspace` in the pipeline config (or --workspace) at a folder you can write, "
                "or fix its permissions",
            ) from exc
        if not os.access(self.root, os.W_OK):
            raise LaunchError(
                "the local workspace folder is not writable",
                path=self.root,
                field="workspace",
                fix="point `workspace` at a folder you can write, or fix its permissions",
            )

    # --- MLflow --------------------------------------------------------------------------------
    def mlflow_client(self) -> Any:
        """An `MlflowClient` on the workspace store (tracking and model registry)."""
        from mlflow.tracking import MlflowClient

        self.ensure_writable()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def experiment_id(self, client: Any, name: str) -> str:
        """Id of experiment `name`, created with its artifacts under the workspace when missing."""
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.artifacts_dir / name).as_uri()
        try:
            return client.create_experiment(name, artifact_location=location)
        except Exception:
            # Another process created it between the lookup and the create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    # --- lock ----------------------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout_s: float = 0.0, *, announce: Any = print) -> Iterator[None]:
        """Hold the workspace lock so two pipeline runs never interleave their writes.

        Args:
            timeout_s: How long to wait for another run to finish; 0 refuses at once.
            announce: Called with a message when the lock is busy and we wait.

        Raises:
            LaunchError: The lock is still held by another run after `timeout_s`.
        """
        self.ensure_writable()
        holder_file = self.root / "workspace.lock.holder"
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            holder = holder_file.read_text(encoding="utf-8").strip() if holder_file.exists() else "unknown"
            if timeout_s <= 0:
                raise LaunchError(
                    f"another pipeline run is using this workspace ({holder})",
                    path=self.lock_path,
                    fix="wait for it to finish, or set `lock_timeout_s: <seconds>` in the pipeline config "
                    "to wait for it",
                ) from None
            announce(f"waiting up to {timeout_s:.0f}s for the workspace lock held by {holder} ...")
            try:
                lock.acquire(timeout=timeout_s)
            except Timeout:
                raise LaunchError(
                    f"another pipeline run still holds the workspace lock after {timeout_s:.0f}s ({holder})",
                    path=self.lock_path,
                    fix="wait for it to finish and run again",
                ) from None
        try:
            holder_file.write_text(
                f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n",
                encoding="utf-8",
            )
            yield
        finally:
            holder_file.unlink(missing_ok=True)
            lock.release()
