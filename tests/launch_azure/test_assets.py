"""Data asset and environment immutability rules against a fake MLClient."""

from __future__ import annotations

import shutil

import pytest

from launch.azure.assets import load_data_asset, register_data_asset
from launch.azure.environment import (
    TAG_ENVIRONMENT_FINGERPRINT,
    environment_fingerprint,
    load_environment,
    register_environment,
)
from launch.errors import LaunchError
from launch.fingerprints import dataset_fingerprint as source_fingerprint
from launch.jobs import DataAssetSpec
from ner_lightning.contract import TAG_DATASET_FINGERPRINT
from tests.conftest import FIXTURES
from tests.launch_azure.conftest import CONFIGS, FakeMLClient, write


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "toy"
    shutil.copytree(FIXTURES / "toy_dataset", folder)
    return folder


def _spec(folder, version="1"):
    return DataAssetSpec(name="toy-ner", version=version, source_dir=str(folder), description="toy")


def test_new_version_is_registered_as_uri_folder_with_its_fingerprint(dataset):
    client = FakeMLClient()
    fingerprint = source_fingerprint(dataset)
    ref, reused = register_data_asset(client, _spec(dataset), fingerprint)
    assert not reused
    assert ref.azure_id == "azureml:toy-ner:1" and ref.fingerprint == fingerprint
    (created,) = client.data.created
    assert created.type == "uri_folder" and created.tags[TAG_DATASET_FINGERPRINT] == fingerprint


def test_same_fingerprint_is_reused_without_upload(dataset):
    client = FakeMLClient()
    fingerprint = source_fingerprint(dataset)
    register_data_asset(client, _spec(dataset), fingerprint)
    ref, reused = register_data_asset(client, _spec(dataset), fingerprint)
    assert reused and ref.version == "1"
    assert len(client.data.created) == 1


def test_same_version_with_other_content_is_refused_with_the_next_version(dataset):
    client = FakeMLClient()
    register_data_asset(client, _spec(dataset), source_fingerprint(dataset))
    register_data_asset(client, _spec(dataset, "2"), source_fingerprint(dataset))
    with (dataset / "train.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"tokens": ["Paris"], "ner_tags": ["B-LOC"]}\n')
    changed = source_fingerprint(dataset)
    with pytest.raises(LaunchError) as info:
        register_data_asset(client, _spec(dataset, "1"), changed)
    assert info.value.field == "version" and "immutable" in info.value.message
    assert "version: '3'" in info.value.fix
    assert len(client.data.created) == 2


def test_invalid_source_folder_fails_before_any_upload(dataset):
    client = FakeMLClient()
    with (dataset / "validation.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"tokens": ["a", "b"], "ner_tags": ["O"]}\n')
    with pytest.raises(LaunchError, match="failed validation"):
        register_data_asset(client, _spec(dataset), "f" * 64)
    (dataset / "validation.jsonl").unlink()
    with pytest.raises(LaunchError, match=r"validation\.jsonl"):
        register_data_asset(client, _spec(dataset), "f" * 64)
    assert client.data.created == []


def test_data_config_resolves_source_relative_to_itself(tmp_path):
    path = write(tmp_path / "cfg" / "data.yaml", "name: d\nversion: '4'\nsource_dir: ../datasets/x\n")
    spec = load_data_asset(path)
    assert spec.version == "4" and spec.source_dir == str((tmp_path / "datasets" / "x").resolve())
    with pytest.raises(LaunchError) as info:
        load_data_asset(write(tmp_path / "bad.yaml", "name: d\nsource_dir: x\n"))
    assert info.value.field == "version"
    assert load_data_asset(CONFIGS / "azure" / "data.yaml").name


def test_environment_definition_and_immutability(tmp_path):
    spec = load_environment(CONFIGS / "azure" / "environment")
    assert spec.image and spec.conda_file.endswith("conda.yaml")
    client = FakeMLClient()
    ref, reused = register_environment(client, spec)
    assert not reused and ref.name == spec.name and ref.version == spec.version
    assert client.environments.created[0].tags[TAG_ENVIRONMENT_FINGERPRINT] == environment_fingerprint(spec)
    assert register_environment(client, spec)[1] is True
    assert len(client.environments.created) == 1

    folder = tmp_path / "env"
    shutil.copytree(CONFIGS / "azure" / "environment", folder)
    with (folder / "conda.yaml").open("a", encoding="utf-8") as handle:
        handle.write("      - rich\n")
    changed = load_environment(folder)
    assert environment_fingerprint(changed) != environment_fingerprint(spec)
    with pytest.raises(LaunchError, match=r"environment .* already registered"):
        register_environment(client, changed)


def test_environment_missing_conda_file_names_the_field(tmp_path):
    path = write(tmp_path / "environment.yaml", "name: e\nversion: '1'\nimage: img\nconda_file: nope.yaml\n")
    with pytest.raises(LaunchError) as info:
        load_environment(path)
    assert info.value.field == "conda_file"
