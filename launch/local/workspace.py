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
    <root>/pipelines/                         pipeline state files (see launch/pipeline_state.py)
    <root>/workspace.lock                     held by a running pipeline
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from launch.files import PIPELINES_DIR, WORKSPACE_LOCK_FILE, ensure_writable_folder, workspace_lock

#: Default workspace folder, relative to the current directory.
DEFAULT_WORKSPACE = ".ner_workspace"
#: Name of the default datastore, as in every Azure ML workspace.
DEFAULT_DATASTORE = "workspaceblobstore"


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
        return self.root / PIPELINES_DIR

    @property
    def lock_path(self) -> Path:
        """The lock file a running pipeline holds."""
        return self.root / WORKSPACE_LOCK_FILE

    # --- checks --------------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Create the workspace folder if needed and prove it is writable.

        Raises:
            LaunchError: The folder cannot be created or written, naming it and the fix.
        """
        ensure_writable_folder(self.root)

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
    def locked(self, timeout_s: float = 0.0, *, announce: Any = print) -> AbstractContextManager[None]:
        """Hold the workspace lock so two pipeline runs never interleave their writes (`launch.files`).

        Args:
            timeout_s: How long to wait for another run to finish; 0 refuses at once.
            announce: Called with a message when the lock is busy and we wait.

        Raises:
            LaunchError: The lock is still held by another run after `timeout_s`.
        """
        return workspace_lock(self.root, timeout_s, announce=announce)
