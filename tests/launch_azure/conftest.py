"""A fake `MLClient`: only the operations at the network boundary imitate the SDK.

Not found -> `azure.core.exceptions.ResourceNotFoundError`, like the real operations. Everything
else (our builders, checks, registration rules) is the real code under test.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.core.exceptions import ResourceNotFoundError

from tests.conftest import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"


class _Poller:
    def __init__(self, value):
        self.value = value

    def result(self):
        return self.value


class FakeWorkspaces:
    def __init__(self, names):
        self.names = set(names)

    def get(self, name=None, **_):
        if name not in self.names:
            raise ResourceNotFoundError(f"Workspace {name} not found")
        return SimpleNamespace(name=name, mlflow_tracking_uri="azureml://fake")


class FakeDatastores:
    def __init__(self, default):
        self.default = default

    def get_default(self, **_):
        if self.default is None:
            raise ResourceNotFoundError("No default datastore")
        return SimpleNamespace(name=self.default)


class FakeCompute:
    def __init__(self):
        self.clusters = {}
        self.created = []

    def get(self, name):
        if name not in self.clusters:
            raise ResourceNotFoundError(f"Compute {name} not found")
        return self.clusters[name]

    def begin_create_or_update(self, compute):
        self.created.append(compute)
        self.clusters[compute.name] = compute
        return _Poller(compute)


class FakeVersioned:
    """`ml_client.data` / `.environments` / `.models`: versions stored by (name, version)."""

    def __init__(self, auto_version=False):
        self.items = {}
        self.created = []
        self.auto_version = auto_version

    def get(self, name, version=None, **_):
        if (name, str(version)) not in self.items:
            raise ResourceNotFoundError(f"{name}:{version} not found")
        return self.items[(name, str(version))]

    def list(self, name=None, **_):
        found = [item for (n, _), item in self.items.items() if n == name]
        if not found:
            raise ResourceNotFoundError(f"{name} not found")
        return iter(found)

    def create_or_update(self, entity):
        if self.auto_version and entity.version is None:
            entity.version = str(1 + sum(1 for n, _ in self.items if n == entity.name))
        self.created.append(entity)
        self.items[(entity.name, str(entity.version))] = entity
        return entity


class FakeJobs:
    """Jobs move through `statuses` one `get` at a time; `children` lists sweep trials."""

    def __init__(self, statuses=("Queued", "Running", "Completed")):
        self.statuses = statuses
        self.submitted = []
        self.polls = {}
        self.children = {}
        self._ids = itertools.count(1)

    def create_or_update(self, entity):
        name = f"job_{next(self._ids)}"
        self.submitted.append(entity)
        return SimpleNamespace(name=name, studio_url=f"https://ml.azure.com/runs/{name}", status="NotStarted")

    def get(self, name):
        count = self.polls.get(name, 0)
        self.polls[name] = count + 1
        return SimpleNamespace(name=name, status=self.statuses[min(count, len(self.statuses) - 1)])

    def stream(self, name):
        return None

    def list(self, parent_job_name=None, **_):
        return iter(self.children.get(parent_job_name, []))


class FakeMLClient:
    def __init__(self, workspace="ws", datastore="workspaceblobstore", workspace_exists=True):
        self.workspace_name = workspace
        self.resource_group_name = "rg"
        self.workspaces = FakeWorkspaces([workspace] if workspace_exists else [])
        self.datastores = FakeDatastores(datastore)
        self.compute = FakeCompute()
        self.data = FakeVersioned()
        self.environments = FakeVersioned()
        self.models = FakeVersioned(auto_version=True)
        self.jobs = FakeJobs()


@pytest.fixture
def ml_client() -> FakeMLClient:
    return FakeMLClient()


@pytest.fixture
def compute_config():
    from launch.azure.compute import load_compute

    return load_compute(CONFIGS / "azure" / "compute.yaml")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
