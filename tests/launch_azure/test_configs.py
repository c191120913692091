"""launch/configs.py: load once, hash bytes, frozen, clear errors."""

from __future__ import annotations

import hashlib
import json

import pytest

from launch.configs import (
    config_file_input,
    config_hash_tags,
    config_hashes_json,
    load_config,
    load_configs,
    thaw,
)
from launch.errors import LaunchError
from tests.launch_azure.conftest import write


def test_hash_is_sha256_of_the_file_bytes_and_data_is_parsed(tmp_path):
    path = write(tmp_path / "train.yaml", "model:\n  dropout: 0.1\n  layers: [1, 2]\n")
    config = load_config(path)
    assert config.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert config.name == "train.yaml"
    assert config.get("model.dropout") == 0.1
    assert config.get("model.missing", "x") == "x"
    assert thaw(config.data) == {"model": {"dropout": 0.1, "layers": [1, 2]}}


def test_loaded_config_cannot_be_mutated(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", "a:\n  b: [1, 2]\n"))
    with pytest.raises(TypeError):
        config.data["a"] = 1
    with pytest.raises(TypeError):
        config.data["a"]["b"] = 3
    with pytest.raises(AttributeError):
        config.data["a"]["b"].append(3)
    with pytest.raises(AttributeError):  # frozen dataclass
        config.sha256 = "0"


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(LaunchError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value) and "does not exist" in str(info.value)
    assert info.value.fix


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(LaunchError) as info:
        load_config(path)
    assert info.value.path == str(path) and info.value.line is not None and info.value.line >= 2
    assert "YAML syntax error" in str(info.value)


def test_tags_env_json_and_uri_file_inputs(tmp_path):
    a = write(tmp_path / "a.yaml", "x: 1\n")
    b = write(tmp_path / "sub" / "b.yaml", "y: 2\n")
    configs = load_configs([a, b])
    tags = config_hash_tags(configs)
    assert tags == {
        "config_sha256.a.yaml": hashlib.sha256(a.read_bytes()).hexdigest(),
        "config_sha256.b.yaml": hashlib.sha256(b.read_bytes()).hexdigest(),
    }
    assert json.loads(config_hashes_json(configs)) == {
        "a.yaml": configs[0].sha256,
        "b.yaml": configs[1].sha256,
    }
    job_input = config_file_input(configs[0])
    assert job_input.type == "uri_file" and job_input.value == str(a.resolve())


def test_two_configs_with_the_same_name_are_refused(tmp_path):
    a = write(tmp_path / "one" / "c.yaml", "x: 1\n")
    b = write(tmp_path / "two" / "c.yaml", "x: 2\n")
    with pytest.raises(LaunchError, match="rename one"):
        load_configs([a, b])


def test_line_of_finds_nested_keys(tmp_path):
    config = load_config(write(tmp_path / "c.yaml", "a: 1\nb:\n  c:\n    d: 2\n"))
    assert config.line_of("b.c.d") == 4
    assert config.line_of("a") == 1
