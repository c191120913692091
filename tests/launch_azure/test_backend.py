"""AzureBackend and the submission helpers against a fake MLClient (jobs, models)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from launch.azure.backend import AzureBackend
from launch.azure.submit import require_completed, wait
from launch.configs import load_config
from launch.errors import JobFailedError
from launch.job_specs import JobContext, build_dry_run, build_sweep
from launch.jobs import AssetRef, Backend
from launch.search_space import load_sweep_config
from tests.conftest import REPO_ROOT
from tests.launch_azure.conftest import CONFIGS, FakeMLClient, write


def _reader(metrics_by_run):
    return lambda run_id: (metrics_by_run.get(run_id, {}), {})


@pytest.fixture
def ctx(tmp_path):
    return JobContext(
        experiment_name="exp",
        dataset=AssetRef("d", "1", "f" * 64),
        environment=AssetRef("e", "1", "e" * 64),
        git_commit="abc",
        train_configs=(load_config(write(tmp_path / "train.yaml", "a: 1\n")),),
    )


def test_backend_satisfies_the_protocol(compute_config):
    backend: Backend = AzureBackend(FakeMLClient(), compute_config, REPO_ROOT, read_run=_reader({}))
    assert backend.name == "azure"


def test_run_submits_waits_and_reports(ctx, compute_config):
    client = FakeMLClient()
    lines = []
    backend = AzureBackend(
        client,
        compute_config,
        REPO_ROOT,
        poll_s=0,
        read_run=_reader({"job_1": {"val_f1": 0.5}}),
        announce=lines.append,
    )
    result = backend.run(build_dry_run(ctx))
    assert result.status == "Completed" and result.job_id == "job_1" and result.metrics["val_f1"] == 0.5
    assert result.outputs["model"] == "azureml://jobs/job_1/outputs/model"
    assert "job_1: Running" in lines and "job_1: Completed" in lines
    assert type(client.jobs.submitted[0]).__name__ == "Command"
    require_completed(result)


def test_failed_job_has_a_clear_terminal_status(ctx, compute_config):
    client = FakeMLClient()
    client.jobs.statuses = ("Running", "Failed")
    backend = AzureBackend(
        client, compute_config, REPO_ROOT, poll_s=0, read_run=_reader({}), announce=lambda _: None
    )
    result = backend.run(build_dry_run(ctx))
    assert result.status == "Failed" and "Failed" in result.error
    with pytest.raises(JobFailedError, match="ended Failed"):
        require_completed(result)


def test_wait_gives_up_after_its_timeout():
    client = FakeMLClient()
    client.jobs.statuses = ("Running",)
    with pytest.raises(JobFailedError, match="still Running"):
        wait(client, "job_9", poll_s=10, timeout_s=30, echo=lambda _: None, sleep=lambda _: None)


def test_run_sweep_lists_children_with_val_f1(ctx, compute_config):
    client = FakeMLClient()
    client.jobs.children["job_1"] = [
        SimpleNamespace(
            name="job_1_1", status="Completed", properties={"hyperparameters": '{"learning_rate": 0.001}'}
        ),
        SimpleNamespace(name="job_1_0", status="Failed", properties={}),
    ]
    backend = AzureBackend(
        client,
        compute_config,
        REPO_ROOT,
        poll_s=0,
        read_run=_reader({"job_1_1": {"val_f1": 0.7}}),
        announce=lambda _: None,
    )
    parent, trials = backend.run_sweep(build_sweep(ctx, load_sweep_config(CONFIGS / "sweep.yaml")))
    assert parent.status == "Completed"
    assert [t.trial_id for t in trials] == ["job_1_0", "job_1_1"]
    assert trials[1].metrics["val_f1"] == 0.7 and trials[1].params == {"learning_rate": 0.001}
    assert trials[0].status == "Failed" and trials[0].metrics == {}
    assert type(client.jobs.submitted[0]).__name__ == "Sweep"


def test_streaming_is_on_by_default_in_a_terminal(compute_config, monkeypatch):
    """Defect 8: streaming was never switched on; now it follows the terminal unless configured."""
    monkeypatch.setattr("sys.stdout", type("Tty", (), {"isatty": lambda self: True, "write": print})())
    assert AzureBackend(FakeMLClient(), compute_config, REPO_ROOT).stream_logs is True
    assert AzureBackend(FakeMLClient(), compute_config, REPO_ROOT, stream_logs=False).stream_logs is False
    monkeypatch.setattr("sys.stdout", type("Pipe", (), {"isatty": lambda self: False, "write": print})())
    assert AzureBackend(FakeMLClient(), compute_config, REPO_ROOT).stream_logs is False


def test_wait_is_bounded_by_the_job_timeout(ctx, compute_config):
    """Defect 8: `wait()` could wait forever; the backend now bounds it by the job's own limit."""
    client = FakeMLClient()
    client.jobs.statuses = ("Running",)
    backend = AzureBackend(
        client,
        compute_config,
        REPO_ROOT,
        poll_s=0.001,
        read_run=_reader({}),
        announce=lambda _: None,
        stream_logs=False,
        queue_allowance_s=0.01,
    )
    spec = build_dry_run(ctx, timeout_s=0)
    with pytest.raises(JobFailedError, match="still Running"):
        backend.run(spec)
