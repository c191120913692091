"""Workspace and compute configs, validate_infrastructure and ner-provision against a fake MLClient."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from launch.azure.compute import load_compute
from launch.azure.infrastructure import PROVISION_COMMAND, validate_infrastructure
from launch.azure.provision import main, provision
from launch.azure.workspace import create_ml_client, load_workspace
from launch.errors import LaunchError
from tests.launch_azure.conftest import CONFIGS, FakeMLClient, write

ENV = {
    "AZURE_SUBSCRIPTION_ID": "1b2c3d4e-1111-2222-3333-444455556666",
    "AZURE_RESOURCE_GROUP": "rg-ner",
    "AZUREML_WORKSPACE_NAME": "ws-ner",
}


def _cluster(compute, role, **overrides):
    cfg = compute.clusters[role]
    values = dict(
        name=cfg.name,
        type="amlcompute",
        size=cfg.size,
        min_instances=0,
        max_instances=cfg.max_instances,
        idle_time_before_scale_down=cfg.idle_time_before_scale_down,
        tier=cfg.tier,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


# --- workspace -------------------------------------------------------------------------------
def test_workspace_values_come_from_environment_variables():
    ref = load_workspace(CONFIGS / "azure" / "workspace.yaml", environ=ENV)
    assert (ref.subscription_id, ref.resource_group, ref.workspace_name) == tuple(ENV.values())


def test_ml_client_is_built_lazily_without_network():
    ref = load_workspace(CONFIGS / "azure" / "workspace.yaml", environ=ENV)

    class NoCredential:
        def get_token(self, *scopes, **kwargs):  # never called: building a client makes no request
            raise AssertionError("network")

    client = create_ml_client(ref, credential=NoCredential())
    assert client.workspace_name == "ws-ner" and client.subscription_id == ENV["AZURE_SUBSCRIPTION_ID"]


@pytest.mark.parametrize(
    ("environ", "text", "field", "message"),
    [
        ({}, None, "subscription_id", "AZURE_SUBSCRIPTION_ID"),
        (
            {**ENV, "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000"},
            None,
            "subscription_id",
            "placeholder",
        ),
        ({**ENV, "AZUREML_WORKSPACE_NAME": "<your-workspace>"}, None, "workspace_name", "placeholder"),
        (ENV, "subscription_id: abc\nresource_group: rg\n", "workspace_name", "missing"),
        (
            ENV,
            "subscription_id: abc\nresource_group: CHANGEME\nworkspace_name: ws\n",
            "resource_group",
            "placeholder",
        ),
    ],
)
def test_missing_or_placeholder_workspace_values_name_the_field(tmp_path, environ, text, field, message):
    path = CONFIGS / "azure" / "workspace.yaml" if text is None else write(tmp_path / "workspace.yaml", text)
    with pytest.raises(LaunchError) as info:
        load_workspace(path, environ=environ)
    assert info.value.field == field and message in info.value.message and info.value.fix


# --- compute config ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("max_instances: 4 ", "max_instances: null ", "clusters.gpu.max_instances"),
        ("    max_instances: 2\n", "", "clusters.cpu.max_instances"),
        ("max_instances: 4 ", "max_instances: 0 ", "clusters.gpu.max_instances"),
        ("max_instances: 4 ", "max_instances: 1000 ", "clusters.gpu.max_instances"),
        (
            "    min_instances: 0\n    max_instances: 2",
            "    min_instances: 1\n    max_instances: 2",
            "clusters.cpu.min_instances",
        ),
        ("tier: dedicated\n  # ONNX", "tier: spot\n  # ONNX", "clusters.gpu.tier"),
    ],
)
def test_unbounded_or_costly_compute_config_is_refused(tmp_path, old, new, field):
    text = (CONFIGS / "azure" / "compute.yaml").read_text()
    assert old in text
    with pytest.raises(LaunchError) as info:
        load_compute(write(tmp_path / "compute.yaml", text.replace(old, new, 1)))
    assert info.value.field == field and info.value.fix and info.value.line is not None


# --- validate_infrastructure ----------------------------------------------------------------------
def test_complete_infrastructure_passes(compute_config):
    client = FakeMLClient()
    for role in ("gpu", "cpu"):
        cluster = _cluster(compute_config, role)
        client.compute.clusters[cluster.name] = cluster
    validate_infrastructure(client, compute_config)
    assert client.compute.created == []


def test_everything_missing_is_listed_in_one_message_and_nothing_is_created(compute_config):
    client = FakeMLClient(datastore=None)
    with pytest.raises(LaunchError) as info:
        validate_infrastructure(client, compute_config)
    text = str(info.value)
    assert "datastore" in text
    assert compute_config.cluster_name("gpu") in text and compute_config.cluster_name("cpu") in text
    assert text.count(PROVISION_COMMAND) >= 2
    assert client.compute.created == []


def test_missing_workspace_says_how_to_create_it(compute_config):
    with pytest.raises(LaunchError, match="az ml workspace create --name ws"):
        validate_infrastructure(FakeMLClient(workspace_exists=False), compute_config)


def test_cluster_without_bounded_autoscale_is_reported(compute_config):
    client = FakeMLClient()
    client.compute.clusters[compute_config.cluster_name("gpu")] = _cluster(
        compute_config, "gpu", min_instances=2
    )
    client.compute.clusters[compute_config.cluster_name("cpu")] = _cluster(
        compute_config, "cpu", max_instances=500
    )
    with pytest.raises(LaunchError) as info:
        validate_infrastructure(client, compute_config)
    assert "min_instances=2" in str(info.value) and "max_instances=500" in str(info.value)


# --- provision --------------------------------------------------------------------------------
def test_provision_creates_then_is_idempotent(compute_config):
    client = FakeMLClient()
    lines = []
    changes = provision(client, compute_config, echo=lines.append)
    assert len(changes) == 2 and all(c.startswith("create") for c in changes)
    created = {c.name: c for c in client.compute.created}
    gpu = created[compute_config.cluster_name("gpu")]
    assert (gpu.min_instances, gpu.max_instances, gpu.tier) == (
        0,
        compute_config.clusters["gpu"].max_instances,
        "dedicated",
    )
    assert gpu.idle_time_before_scale_down == compute_config.clusters["gpu"].idle_time_before_scale_down
    validate_infrastructure(client, compute_config)
    assert provision(client, compute_config, echo=lines.append) == []
    assert len(client.compute.created) == 2
    assert any("unchanged" in line for line in lines)


def test_provision_updates_drift_and_dry_run_changes_nothing(compute_config):
    client = FakeMLClient()
    client.compute.clusters[compute_config.cluster_name("gpu")] = _cluster(
        compute_config, "gpu", max_instances=10
    )
    client.compute.clusters[compute_config.cluster_name("cpu")] = _cluster(compute_config, "cpu")
    planned = provision(client, compute_config, dry_run=True, echo=lambda _: None)
    assert planned == [
        f"would update gpu cluster {compute_config.cluster_name('gpu')}: max_instances 10 -> 4"
    ]
    assert client.compute.created == []
    assert len(provision(client, compute_config, echo=lambda _: None)) == 1
    assert client.compute.created[0].max_instances == 4


def test_provision_refuses_a_size_change(compute_config):
    client = FakeMLClient()
    client.compute.clusters[compute_config.cluster_name("gpu")] = _cluster(
        compute_config, "gpu", size="Standard_NC24"
    )
    with pytest.raises(LaunchError) as info:
        provision(client, compute_config, echo=lambda _: None)
    assert info.value.field == "clusters.gpu.size"


def test_provision_main_reports_placeholder_config_before_any_call(tmp_path, capsys, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    status = main(
        [
            "--workspace",
            str(CONFIGS / "azure" / "workspace.yaml"),
            "--compute",
            str(CONFIGS / "azure" / "compute.yaml"),
        ]
    )
    assert status == 2
    assert "AZURE_SUBSCRIPTION_ID" in capsys.readouterr().err
