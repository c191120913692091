"""A variant folder is trained by one process at a time (issue 14, defect 5), and final_training.yaml
refuses what would silently do the wrong thing: duplicate keys, an output root outside the project."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch.configs import load_config
from launch.errors import LaunchError
from launch.variants import METADATA_FILE
from ner_lightning.errors import ConfigError
from tests.conftest import REPO_ROOT

#: One launch of the smoke project's final training with `variant: {number: 3}`: it resolves (and so
#: claims) the variant, reports the decision, then stays alive as a training launcher would.
_LAUNCH = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from tests.final_training.conftest import Project
from launch.variants import VariantBusyError
project = Project.__new__(Project)
project.root = Path(sys.argv[1]); project.config_dir = project.root / "configs"
project.experiment = {"name": "exp", "data_config": "data/toy.yaml"}
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.005)
try:
    resolved = project.load()
    print(json.dumps({"action": resolved.action, "variant": resolved.variant}), flush=True)
except VariantBusyError as error:
    print(json.dumps({"busy": str(error)}), flush=True)
time.sleep(float(sys.argv[3]))
"""


def _launch(project, start: float, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, str(project.root), str(start), str(hold_s), str(REPO_ROOT)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_launches_of_one_variant_number_train_it_once(project) -> None:
    project.final_config("variant:\n  number: 3\n")
    start = time.time() + 3.0  # every process imports first, then they all resolve at once
    children = [_launch(project, start, hold_s=4.0) for _ in range(6)]
    outcomes = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    trained = [o for o in outcomes if o.get("action") == "train"]
    busy = [o for o in outcomes if "busy" in o]
    assert len(trained) == 1 and trained[0]["variant"] == 3
    assert len(busy) == 5
    assert all("v3" in o["busy"] and "force_new" in o["busy"] for o in busy)


def test_resume_if_incomplete_skips_a_variant_whose_owner_is_alive(project) -> None:
    owner = _launch(project, time.time(), hold_s=60.0)  # claims v1 and keeps running
    try:
        line = owner.stdout.readline()
        assert json.loads(line) == {"action": "train", "variant": 1}
        project.final_config("run:\n  mode: resume_if_incomplete\n")
        other = project.load()
        assert other.variant == 2  # v1 is being trained by a live process: never resumed by a second one
        metadata = json.loads((Path(other.output_dir) / METADATA_FILE).read_text())
        assert metadata["owner"]["pid"] != owner.pid
    finally:
        owner.kill()
        owner.wait()
    # Its owner is gone: v2 (ours) and v1 are both resumable now; the latest incomplete one is chosen,
    # and a third process could take over v1 too.
    v1 = json.loads(next(project.root.rglob("v1/" + METADATA_FILE)).read_text())
    assert v1["owner"]["pid"] == owner.pid and v1["status"] == "allocated"
    project.final_config("run:\n  mode: resume_if_incomplete\nvariant:\n  number: 1\n")
    assert project.load().variant == 1  # taken over from the dead owner


def test_duplicate_keys_in_final_training_yaml_are_refused_with_both_lines(project) -> None:
    project.final_config("training:\n  learning_rate: 0.001\n  batch_size: 8\n  learning_rate: 0.002\n")
    with pytest.raises(ConfigError) as caught:
        project.load()
    message = str(caught.value)
    assert "final_training.yaml:4:" in message
    assert "found the key 'learning_rate' twice" in message and "first on line 2" in message


def test_duplicate_keys_in_a_launcher_config_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "sweep.yaml"
    config.write_text("max_trials: 3\nobjective: val_f1\nmax_trials: 5\n", encoding="utf-8")
    with pytest.raises(LaunchError) as caught:
        load_config(config)
    assert "sweep.yaml" in str(caught.value) and "found the key 'max_trials' twice" in str(caught.value)


@pytest.mark.parametrize("root", ["../../x", "/tmp/elsewhere", "outputs/../../escape"])
def test_output_root_outside_the_project_is_refused(project, root: str) -> None:
    project.final_config(f"output:\n  root: {root}\n")
    with pytest.raises(ConfigError) as caught:
        project.load()
    assert "output.root" in str(caught.value) and "outside the project" in str(caught.value)
    assert not (project.root.parent / "x").exists()
    assert not (project.root.parent / "escape").exists()
