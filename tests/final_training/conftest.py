"""Shared helpers of the final-training tests: a throw-away project with configs and a dataset."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from launch.final_training import ResolvedFinalTraining, load_final_training_config
from tests.conftest import FIXTURES

TOY_DATASET = FIXTURES / "toy_dataset"
#: Commit used for the code fingerprint, so other people's commits never change exec_fp mid-test.
COMMIT = "0123456789abcdef0123456789abcdef01234567"
BEST = {"backbone": "tests/fixtures/backbones/tiny-bert", "params": {"learning_rate": 3e-4, "batch_size": 4}}


def write_fake_checkpoint(path: Path, ours: bool = True) -> Path:
    """A zip laid out like torch.save's archive; `ours` puts the ner_lightning key in data.pkl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = (
        b"\x80\x02}q\x00X\r\x00\x00\x00ner_lightningq\x01}"
        if ours
        else b"\x80\x02}q\x00X\x05\x00\x00\x00statq\x01}"
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return path


class Project:
    """A project root in tmp_path: configs/ with a data config, a dataset copy, outputs/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "configs"
        (self.config_dir / "data").mkdir(parents=True)
        self.dataset = root / "data" / "toy"
        shutil.copytree(TOY_DATASET, self.dataset)
        self.write_yaml("data/toy.yaml", {"name": "toy", "version": "1", "local_path": "data/toy"})
        self.experiment = {"name": "exp", "data_config": "data/toy.yaml"}
        self.final_config("# every key at the plan's default\n")

    def write_yaml(self, relative: str, data: dict) -> Path:
        path = self.config_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def final_config(self, text: str) -> Path:
        path = self.config_dir / "final_training.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def load(self, best: dict | None = None, train: dict | None = None, **kwargs) -> ResolvedFinalTraining:
        kwargs.setdefault("git_commit", COMMIT)
        return load_final_training_config(
            self.root, self.config_dir, best or BEST, self.experiment, train or {}, **kwargs
        )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path / "proj")


@pytest.fixture
def fake_checkpoint() -> Callable[..., Path]:
    return write_fake_checkpoint
