"""MLflow: a job attaches to MLFLOW_RUN_ID in a real SQLite store and logs metrics, config hashes and commit."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import mlflow
import pytest

from ner_lightning import tracking
from ner_lightning.cli import cli_main
from ner_lightning.contract import PRIMARY_METRIC, TRAIN_LOSS, VAL_PRECISION, VAL_RECALL
from ner_lightning.errors import ConfigError
from ner_lightning.tracking import config_hashes, git_commit, resolve_experiment_name, resolve_tracking_uri
from tests.conftest import REPO_ROOT
from tests.fixtures.tiny_runs import TRAIN_CONFIGS, tiny_fit_args

CONFIGS = TRAIN_CONFIGS


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_metrics_land_in_the_run_named_by_mlflow_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
    monkeypatch.setenv("NER_GIT_COMMIT", "0123abcd")
    monkeypatch.setenv("NER_CONFIG_SHA256", json.dumps({"sweep.yaml": "f" * 64}))

    cli_main(
        tiny_fit_args(
            tmp_path / "out",
            "--trainer.max_epochs",
            "2",
            "--trainer.check_val_every_n_epoch",
            "1",
            logger=True,
        )
    )

    assert [r.info.run_id for r in client.search_runs([experiment])] == [run.info.run_id]  # no new run
    logged = client.get_run(run.info.run_id)
    for name in (PRIMARY_METRIC, VAL_PRECISION, VAL_RECALL, TRAIN_LOSS):
        assert name in logged.data.metrics
    assert len(client.get_metric_history(run.info.run_id, PRIMARY_METRIC)) == 2  # once per validation epoch
    tags = logged.data.tags
    assert tags["git_commit"] == "0123abcd"
    assert tags["config_sha256.base.yaml"] == _sha(CONFIGS / "base.yaml")
    assert tags["config_sha256.tiny.yaml"] == _sha(CONFIGS / "tiny.yaml")
    assert tags["config_sha256.sweep.yaml"] == "f" * 64
    params = logged.data.params
    assert params["head/class_path"] == "ner_lightning.model.heads.SoftmaxHead"
    assert int(params["threads"]) >= 1 and int(params["cores_available"]) >= int(params["threads"])
    assert params["learning_rate"] == "0.003"
    assert {"version.torch", "version.lightning", "version.transformers", "version.ner-lightning"} <= set(
        params
    )
    # The run belongs to whoever created it: the job does not end it.
    assert logged.info.status == "RUNNING"
    assert not (tmp_path / "mlruns.db").exists()


def test_default_store_is_sqlite_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert resolve_experiment_name() == "ner-lightning"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exp")
    assert resolve_tracking_uri() == "sqlite:///elsewhere.db"
    assert resolve_tracking_uri("sqlite:///given.db") == "sqlite:///given.db"
    assert resolve_experiment_name() == "exp"


def test_git_commit_from_env_repo_or_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NER_GIT_COMMIT", "abc")
    assert git_commit() == "abc"
    monkeypatch.delenv("NER_GIT_COMMIT")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit() == (head or "unknown")

    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    monkeypatch.setattr(tracking.subprocess, "run", no_git)
    assert git_commit() == "unknown"


def test_bad_config_hash_env_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NER_CONFIG_SHA256", "[1, 2]")
    with pytest.raises(ConfigError, match="NER_CONFIG_SHA256"):
        config_hashes([])
