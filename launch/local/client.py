"""`EmulatedMLClient`: an Azure ML workspace on this machine, behind the `MLClient` surface.

In the spirit of Azurite (Azure Storage) and moto (AWS): the launcher's Azure code
(`launch/azure/`) runs unchanged against it. `ner-pipeline --backend local` is `AzureBackend` on
this client; the job entities it submits are serialized, read back with `load_job` and executed
here (see `launch/local/jobs.py`, `runner.py`, `sweep.py`). State lives in the workspace folder
(`launch/local/workspace.py`): registries, datastore, code snapshots, jobs and the MLflow store.

What it cannot reproduce: GPUs (jobs run on this machine's CPUs unless it has GPUs), quotas,
queueing behind other users, network access from jobs, image builds (environments link this
machine's installed packages; only which packages are visible is reproduced).
"""

from __future__ import annotations

from pathlib import Path

from launch.local.jobs import JobOperations
from launch.local.registry import (
    ComputeOperations,
    DatastoreOperations,
    VersionedOperations,
    WorkspaceOperations,
)
from launch.local.uris import resolve_uri
from launch.local.workspace import DEFAULT_WORKSPACE, LocalWorkspace

#: Identifiers of the emulated workspace (what `AZUREML_ARM_*` say inside jobs).
EMULATED_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
EMULATED_RESOURCE_GROUP = "emulated"
EMULATED_WORKSPACE = "emulated-workspace"


class EmulatedMLClient:
    """The `azure.ai.ml.MLClient` operations the project uses, on a local workspace folder.

    Args:
        root: Workspace folder; created when missing.
        workspace_name: Name reported by `workspaces.get` and `AZUREML_ARM_WORKSPACE_NAME`.
    """

    def __init__(
        self, root: str | Path = DEFAULT_WORKSPACE, workspace_name: str = EMULATED_WORKSPACE
    ) -> None:
        self.workspace = LocalWorkspace(root)
        self.workspace.ensure_writable()
        self.workspace_name = workspace_name
        self.resource_group_name = EMULATED_RESOURCE_GROUP
        self.subscription_id = EMULATED_SUBSCRIPTION
        self.workspaces = WorkspaceOperations(self.workspace, workspace_name)
        self.datastores = DatastoreOperations(self.workspace)
        self.compute = ComputeOperations(self.workspace)
        self.data = VersionedOperations(self.workspace, "data", self.resolve)
        self.environments = VersionedOperations(self.workspace, "environments", self.resolve)
        self.models = VersionedOperations(self.workspace, "models", self.resolve)
        self.jobs = JobOperations(self)

    def resolve(self, uri: str) -> Path:
        """The local path behind an `azureml:` reference (see `launch.local.uris`)."""
        return resolve_uri(self, uri)

    def close(self) -> list[str]:
        """Cancel the jobs still running (their process groups end, runs marked KILLED)."""
        return self.jobs.shutdown()
