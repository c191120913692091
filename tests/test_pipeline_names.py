"""Names that become paths are checked when a pipeline config is loaded (issue 14, defect 1).

Property: for any name drawn from a hostile alphabet (`..`, `/`, quotes, unicode, 300 characters),
`load_pipeline_config` either refuses it, naming the field, or accepts a name that stays a single
path component inside the workspace.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launch.errors import LaunchError
from launch.names import confined, is_safe_name
from launch.pipeline import NAMED_KEYS, load_pipeline_config
from tests.conftest import REPO_ROOT

SMOKE = REPO_ROOT / "configs" / "pipeline" / "smoke.yaml"
HOSTILE = st.lists(st.sampled_from([*list("ab./\\'\"` -_é€\x00\n:Ω"), "..", "../"]), max_size=150).map(
    "".join
) | st.sampled_from(["../../../../victim", "../../etc", "it's", "a" * 300, "..", ".", "/abs", "ok-name.v2"])


def _write_config(folder: Path, key: str, value: str) -> Path:
    data = yaml.safe_load(SMOKE.read_text(encoding="utf-8"))
    node = data
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    # A copy of configs/ beside a link to tests/, so the preset's relative paths still resolve.
    if not (folder / "configs").exists():
        shutil.copytree(REPO_ROOT / "configs", folder / "configs")
        (folder / "tests").symlink_to(REPO_ROOT / "tests")
    path = folder / "configs" / "pipeline" / "hostile.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("key", NAMED_KEYS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=HOSTILE)
def test_a_name_is_refused_at_load_or_stays_one_component_inside_the_workspace(
    tmp_path: Path, key: str, name: str
) -> None:
    path = _write_config(tmp_path, key, name)
    try:
        config = load_pipeline_config(path)
    except LaunchError as error:
        assert key in str(error) and "hostile.yaml" in str(error)
        assert not is_safe_name(name) or name == ""
        return
    assert is_safe_name(name)
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    for value in (config.name, config.dataset_name, config.dataset_version, config.model_name):
        assert confined(workspace, "pipelines", f"{value}_state.json").parent == workspace / "pipelines"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("dataset.name", "../../../../victim"),
        ("name", "../../../x"),
        ("registration.model_name", "../../etc"),
        ("registration.model_name", "it's"),
    ],
)
def test_the_issue_examples_are_refused_before_any_step(tmp_path: Path, key: str, name: str) -> None:
    path = _write_config(tmp_path, key, name)
    with pytest.raises(LaunchError) as caught:
        load_pipeline_config(path)
    assert f"`{key}`" in str(caught.value) and "letters, digits" in str(caught.value)


def test_confined_refuses_escapes(tmp_path: Path) -> None:
    assert confined(tmp_path, "a", "b") == tmp_path / "a" / "b"
    for parts in (("..", "x"), ("/etc",), ("a", "..", "..", "x")):
        with pytest.raises(ValueError, match="outside"):
            confined(tmp_path, *parts)
    (tmp_path / "link").symlink_to("/")
    with pytest.raises(ValueError, match="outside"):
        confined(tmp_path, "link", "etc")
