"""The local backend against a real MLflow SQLite store, real subprocesses and a real Optuna study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from launch.errors import LaunchError
from launch.jobs import (
    AssetRef,
    Choice,
    CommandJobSpec,
    DataAssetSpec,
    EarlyTermination,
    EnvironmentSpec,
    JobInput,
    LogUniform,
    SweepJobSpec,
    SweepLimits,
)
from launch.local import LocalBackend, LocalWorkspace
from launch.local.runner import substitute
from tests.conftest import REPO_ROOT
from tests.pipeline.lock_holder import workspace_locked_elsewhere

FAKE = str(Path(__file__).with_name("fake_train.py"))
ENV = AssetRef("env", "1")


def _job(command: str, name: str = "dry_run", stage: str = "dry_run", **kw) -> CommandJobSpec:
    return CommandJobSpec(
        name=name,
        stage=stage,
        command=command,
        inputs=kw.pop("inputs", {}),
        outputs=("output",),
        compute="cpu",
        environment=ENV,
        experiment_name="exp",
        display_name=name,
        tags={"dataset_name": "toy"},
        **kw,
    )


@pytest.fixture
def backend(tmp_path: Path) -> LocalBackend:
    return LocalBackend(tmp_path / "ws", code_dir=REPO_ROOT, poll_interval_s=0.2, announce=lambda _m: None)


def _dataset(tmp_path: Path, text: str = "a") -> Path:
    folder = tmp_path / f"data-{text}"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"tokens": [text], "ner_tags": ["O"]}) + "\n")
    (folder / "validation.jsonl").write_text(json.dumps({"tokens": [text], "ner_tags": ["O"]}) + "\n")
    return folder


def test_job_attaches_to_its_mlflow_run_with_inputs_outputs_and_env(
    backend: LocalBackend, tmp_path: Path
) -> None:
    data = _dataset(tmp_path)
    ref, reused = backend.ensure_data_asset(DataAssetSpec("toy", "1", str(data)), "fp1")
    assert not reused
    job = _job(
        f"python {FAKE} --out ${{{{outputs.output}}}} --score 0.75 --epochs 2 && ls ${{{{inputs.data}}}}",
        inputs={"data": JobInput("uri_folder", ref)},
        env_vars={"EXTRA_VAR": "hello"},
    )
    result = backend.run(job)
    assert result.status == "Completed", result.error
    assert result.metrics["val_f1"] == pytest.approx(0.75)
    assert Path(result.outputs["output"], "result.txt").read_text().strip() == "0.75"
    log = Path(result.log_path).read_text()
    assert "env=hello" in log and "train.jsonl" in log
    run = MlflowClient(backend.workspace.tracking_uri).get_run(result.run_id)
    assert run.data.tags["stage"] == "dry_run" and run.data.tags["dataset_name"] == "toy"
    assert run.info.status == "FINISHED"
    assert len(MlflowClient(backend.workspace.tracking_uri).get_metric_history(result.run_id, "val_f1")) == 2


def test_failed_job_reports_its_log_tail(backend: LocalBackend) -> None:
    result = backend.run(_job(f"python {FAKE} --out ${{{{outputs.output}}}} --fail 'misaligned line 3'"))
    assert result.status == "Failed"
    assert "misaligned line 3" in result.error and "exited with status 3" in result.error


def test_unbound_placeholder_is_refused() -> None:
    with pytest.raises(LaunchError, match=r"inputs\.data"):
        substitute("python x ${{inputs.data}}", {"inputs": {}})


def test_data_asset_is_copied_and_immutable(backend: LocalBackend, tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    ref, _ = backend.ensure_data_asset(DataAssetSpec("toy", "1", str(data)), "fp1")
    copy = backend.data_asset_path(ref)
    assert (copy / "train.jsonl").read_text() == (data / "train.jsonl").read_text()
    assert backend.ensure_data_asset(DataAssetSpec("toy", "1", str(data)), "fp1") == (ref, True)
    with pytest.raises(LaunchError, match=r"immutable.*version: '2'"):
        backend.ensure_data_asset(DataAssetSpec("toy", "1", str(_dataset(tmp_path, "b"))), "fp2")
    assert (copy / "train.jsonl").read_text() == (data / "train.jsonl").read_text()
    env = EnvironmentSpec("env", "1", "image", "conda.yaml")
    assert backend.ensure_environment(env, "e1")[1] is False
    assert backend.ensure_environment(env, "e1")[1] is True
    with pytest.raises(LaunchError, match="environment env:1"):
        backend.ensure_environment(env, "e2")


def _sweep(command: str, algorithm: str = "random", trials: int = 3, **kw) -> SweepJobSpec:
    return SweepJobSpec(
        trial=_job(command, name="sweep", stage="sweep"),
        search_space=kw.pop("space", {"score": Choice((0.2, 0.9, 0.5))}),
        sampling_algorithm=algorithm,
        limits=SweepLimits(max_total_trials=trials, max_concurrent_trials=kw.pop("concurrent", 1)),
        seed=1,
        **kw,
    )


def test_grid_sweep_runs_every_point_as_child_runs(backend: LocalBackend) -> None:
    sweep = _sweep(
        f"python {FAKE} --out ${{{{outputs.output}}}} --score ${{{{search_space.score}}}}",
        algorithm="grid",
        trials=10,
        concurrent=2,
    )
    parent, trials = backend.run_sweep(sweep)
    assert parent.status == "Completed"
    assert sorted(t.params["score"] for t in trials) == [0.2, 0.5, 0.9]
    assert parent.metrics["val_f1"] == pytest.approx(0.9)
    client = MlflowClient(backend.workspace.tracking_uri)
    for trial in trials:
        tags = client.get_run(trial.run_id).data.tags
        assert tags["mlflow.parentRunId"] == parent.run_id and tags["stage"] == "sweep"
        assert trial.metrics["val_f1"] == pytest.approx(trial.params["score"])


def test_median_pruning_stops_a_worse_trial(backend: LocalBackend) -> None:
    sweep = _sweep(
        f"python {FAKE} --out ${{{{outputs.output}}}} --score ${{{{search_space.score}}}} --epochs 6 --sleep 0.5",
        algorithm="grid",
        space={"score": Choice((0.9, 0.1))},
        trials=2,
        early_termination=EarlyTermination("median", evaluation_interval=1, delay_evaluation=1),
    )
    _parent, trials = backend.run_sweep(sweep)
    by_score = {t.params["score"]: t for t in trials}
    assert by_score[0.9].status == "Completed"
    assert by_score[0.1].status == "Canceled"


def test_bayesian_sweep_with_log_uniform_and_failing_trials(backend: LocalBackend) -> None:
    sweep = _sweep(
        f"python {FAKE} --out ${{{{outputs.output}}}} --score ${{{{search_space.lr}}}} --fail boom",
        algorithm="bayesian",
        space={"lr": LogUniform(1e-4, 1e-1)},
        trials=2,
    )
    parent, trials = backend.run_sweep(sweep)
    assert parent.status == "Failed"
    assert [t.status for t in trials] == ["Failed", "Failed"]
    assert all("boom" in t.error for t in trials)
    assert all(1e-4 <= t.params["lr"] <= 1e-1 for t in trials)


def test_non_writable_workspace_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LaunchError, match=r"\[workspace\]: the local workspace folder is not writable"):
        LocalBackend(blocker / "ws").validate_infrastructure()


def test_workspace_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    workspace = LocalWorkspace(tmp_path / "ws")
    with workspace_locked_elsewhere(tmp_path / "ws"):
        with (
            pytest.raises(LaunchError, match=r"another pipeline run is using this workspace \(pid"),
            workspace.locked(timeout_s=0),
        ):
            pass
        messages: list[str] = []
        with (
            pytest.raises(LaunchError, match="still holds"),
            workspace.locked(timeout_s=0.5, announce=messages.append),
        ):
            pass
        assert messages and "waiting" in messages[0]
    with workspace.locked(timeout_s=0):
        pass
