"""`ner-pipeline` and the orchestration: config errors, lineage refusals, concurrency, and the
smoke preset end to end (acceptance 1-4, 6) once the training and conversion jobs are available."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
import yaml
from azure.ai.ml import load_job
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from launch.azure.entities import command_entity
from launch.azure.environment import environment_fingerprint, load_environment
from launch.cli import main
from launch.errors import LaunchError
from launch.final_training.command import resuming_job
from launch.jobs import AssetRef, CommandJobSpec, JobResult, ModelRegistration, job_output_uri
from launch.lineage import (
    TAG_BACKBONE,
    TAG_CONVERSION_RUN_ID,
    TAG_FINAL_RUN_ID,
    TAG_METRIC,
    TAG_METRIC_VALUE,
    TAG_PIPELINE,
    TAG_SWEEP_ID,
)
from launch.local import EmulatedMLClient
from launch.local.sweep import PARENT_RUN_TAG
from launch.pipeline import (
    STEPS,
    Pipeline,
    PipelineState,
    dataset_fingerprint,
    load_pipeline_config,
    make_backend,
    run_pipeline,
)
from launch.search_space import load_sweep_config
from launch.selection import RANKED_FILE, SELECTION_FILE
from ner_lightning.contract import (
    CONVERSION_GATE_METRICS,
    CONVERSION_RECIPE_PARAMS,
    HELDOUT_F1_INT8,
    HELDOUT_GOLD_ENTITIES,
    MODEL_METADATA_FILE,
    ONNX_MODEL_FILE,
    PRIMARY_METRIC,
    SMOKE_REPORT_FILE,
    STAGE_CONVERSION,
    STAGE_DRY_RUN,
    STAGE_FINAL,
    STAGE_PROD,
    STAGE_SWEEP,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_DATASET_FINGERPRINT,
    TAG_DATASET_NAME,
    TAG_DATASET_VERSION,
    TAG_GIT_COMMIT,
    TAG_PRODUCTION_ELIGIBLE,
    TAG_STAGE,
)
from tests.conftest import REPO_ROOT
from tests.pipeline.lock_holder import lock_is_free, workspace_locked_elsewhere
from tests.pipeline.processes import live_in_group

SMOKE = REPO_ROOT / "configs" / "pipeline" / "smoke.yaml"
TOY_DATASET = REPO_ROOT / "tests" / "fixtures" / "toy_dataset"
NOTEBOOK = REPO_ROOT / "notebooks" / "01_orchestrate_training.ipynb"


# --- config and CLI errors ---------------------------------------------------------------
def test_missing_key_names_the_key_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = SMOKE.read_text().replace("  model_name: ner-smoke\n", "  other: x\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text(text)
    assert main(["run", "--config", str(config), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err
    assert "[registration.model_name]: missing required key `registration.model_name`" in err
    assert re.search(r"pipeline\.yaml:\d+", err) and "Traceback" not in err


def test_missing_config_file_and_unknown_force_step(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "config file does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--config", str(SMOKE), "--force", "bogus"])


def test_non_writable_workspace_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", "--config", str(SMOKE), "--workspace", str(blocker / "ws")]) == 2
    assert "the local workspace folder is not writable" in capsys.readouterr().err


def test_second_concurrent_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    workspace = tmp_path / "ws"
    with workspace_locked_elsewhere(workspace):
        assert main(["run", "--config", str(SMOKE), "--workspace", str(workspace)]) == 2
        err = capsys.readouterr().err
        assert "another pipeline run is using this workspace" in err
        # The fix names the config key that exists, not a command-line flag that does not (issue 14, 13).
        assert "lock_timeout_s: <seconds>" in err and "--lock-timeout" not in err
    assert not (workspace / "pipelines").exists()  # the refused run wrote no state


# --- the pipeline on the emulated workspace: fast jobs (no training) -------------------------
@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory):
    """`AzureBackend` on an emulated workspace with the project's environment registered."""
    root = tmp_path_factory.mktemp("emulated")
    config = replace(load_pipeline_config(SMOKE), workspace=root / "ws")
    backend = make_backend(config, "local", REPO_ROOT, announce=lambda _m: None)
    spec = load_environment(config.environment)
    backend.ensure_environment(spec, environment_fingerprint(spec))
    backend.stream_logs, backend.poll_s = False, 0.2
    yield SimpleNamespace(backend=backend, client=backend.ml_client, config=config, root=root)
    backend.ml_client.close()


def _spec(
    emulated, command: str, *, stage: str = "dry_run", tags: Mapping[str, str] | None = None
) -> CommandJobSpec:
    from launch.azure.environment import load_environment as load_env

    env = load_env(emulated.config.environment)
    return CommandJobSpec(
        name=stage,
        stage=stage,
        command=command,
        inputs={},
        outputs=("model",),
        compute="cpu",
        environment=AssetRef(env.name, env.version),
        experiment_name="exp",
        display_name=stage,
        tags={TAG_STAGE: stage, **(tags or {})},
        timeout_s=300,
    )


MODEL_FILES = (
    "mkdir -p ${{outputs.model}} && echo onnx > ${{outputs.model}}/model.onnx && "
    """echo '{"quantization": "int8"}' > ${{outputs.model}}/ner_model.json && """
    "echo '{}' > ${{outputs.model}}/smoke_report.json"
)


def _registration(final_run: str, folder: str, pipeline: str = "smoke") -> ModelRegistration:
    tags = {
        "stage": "prod",
        "dataset_version": "1",
        "dataset_name": "toy",
        TAG_BACKBONE: "tiny",
        TAG_METRIC: "val_f1",
        TAG_METRIC_VALUE: "0.9",
        TAG_FINAL_RUN_ID: final_run,
        TAG_CONVERSION_RUN_ID: folder.split("/")[3],
        TAG_SWEEP_ID: "sweep",
        TAG_PIPELINE: pipeline,
    }
    return ModelRegistration("ner-model", folder, tags)


def test_registration_checks_lineage_on_the_azure_path(emulated) -> None:
    """Defect 8: Azure registration skipped the lineage check; it now runs on both backends."""
    backend = emulated.backend
    sweep = backend.run(_spec(emulated, "true", stage=STAGE_SWEEP))
    final = backend.run(_spec(emulated, "true", stage=STAGE_FINAL))
    converted = backend.run(_spec(emulated, MODEL_FILES, stage=STAGE_CONVERSION))
    folder = converted.outputs["model"]
    with pytest.raises(LaunchError, match="is a 'sweep' run, not a final-training run"):
        backend.register_model(_registration(sweep.run_id, folder))
    with pytest.raises(LaunchError, match="lineage run nope does not exist"):
        backend.register_model(_registration("nope", folder))
    first = backend.register_model(_registration(final.run_id, folder))
    assert (first.version, first.reused) == ("1", False)
    again = backend.register_model(_registration(final.run_id, folder))
    assert (again.version, again.reused) == ("1", True)
    with pytest.raises(LaunchError, match="already exists with another lineage"):
        backend.register_model(_registration(final.run_id, folder, pipeline="other"))
    with_checkpoint = backend.run(
        _spec(emulated, f"{MODEL_FILES} && echo x > ${{{{outputs.model}}}}/last.ckpt", stage=STAGE_CONVERSION)
    )
    with pytest.raises(LaunchError, match="checkpoints are never registered"):
        backend.register_model(_registration(final.run_id, with_checkpoint.outputs["model"]))
    assert [m.version for m in emulated.client.models.list(name="ner-model")] == ["1"]


def test_registration_is_idempotent_by_content_and_keeps_one_prod_version(emulated) -> None:
    """Issue 14, defect 6: after the state file is lost the same int8 folder comes back under another
    final run id (a rerun); it reuses its version. New content archives the previous prod version."""
    backend, name = emulated.backend, "ner-prod-once"
    finals = [backend.run(_spec(emulated, "true", stage=STAGE_FINAL)) for _ in range(3)]
    converted = backend.run(_spec(emulated, MODEL_FILES, stage=STAGE_CONVERSION))
    first = backend.register_model(
        replace(_registration(finals[0].run_id, converted.outputs["model"]), name=name)
    )
    # Same bytes, other lineage run: the registry answers with the version it already holds.
    again = backend.register_model(
        replace(_registration(finals[1].run_id, converted.outputs["model"]), name=name)
    )
    assert (first.version, again.version, again.reused) == ("1", "1", True)
    other = backend.run(
        _spec(emulated, MODEL_FILES.replace("echo onnx", "echo onnx2"), stage=STAGE_CONVERSION)
    )
    second = backend.register_model(
        replace(_registration(finals[2].run_id, other.outputs["model"]), name=name)
    )
    assert (second.version, second.reused) == ("2", False)
    stages = {
        m.version: (m.tags["stage"], m.tags.get("superseded_by"))
        for m in emulated.client.models.list(name=name)
    }
    assert stages == {"1": ("archived", "2"), "2": ("prod", None)}


def test_rerun_reattaches_to_the_submitted_job_instead_of_resubmitting(emulated) -> None:
    """Defect 4: the job name is in the state file right after submission; a rerun re-attaches."""
    state_dir = emulated.root / "ws" / "pipelines"
    spec = _spec(emulated, "sleep 4 && mkdir -p ${{outputs.model}}")
    first = Pipeline(emulated.config, emulated.backend, state_dir, REPO_ROOT, announce=lambda _m: None)
    first._fingerprints["dry_run"] = "same inputs"
    done: list[JobResult] = []
    worker = threading.Thread(target=lambda: done.append(first._run_job(spec, "dry_run")))
    before = set(emulated.client.jobs.store.names())
    worker.start()
    deadline = time.monotonic() + 120
    while (record := PipelineState(state_dir / "smoke.json").get("dry_run")) is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (
        record.status == "submitted"
        and emulated.client.jobs.get(record.result["job_id"]).status != "Completed"
    )
    # What a rerun after Ctrl-C does: a new Pipeline on the same state re-attaches.
    second = Pipeline(emulated.config, emulated.backend, state_dir, REPO_ROOT, announce=lambda _m: None)
    second._fingerprints["dry_run"] = "same inputs"
    attached = second._run_job(spec, "dry_run")
    worker.join()
    assert attached.job_id == done[0].job_id == record.result["job_id"] and attached.status == "Completed"
    assert len(set(emulated.client.jobs.store.names()) - before) == 1


def test_interrupted_final_training_resumes_from_its_azureml_checkpoint(emulated) -> None:
    """Defect 5: `Path("azureml://...").is_file()` never held; resume now reads the job output."""
    backend = emulated.backend
    interrupted = backend.ml_client.jobs.create_or_update(
        command_entity(
            _spec(
                emulated,
                "mkdir -p ${{outputs.model}}/checkpoints && echo epoch1 > ${{outputs.model}}/checkpoints/last.ckpt "
                "&& sleep 120",
                stage=STAGE_FINAL,
            ),
            backend.compute,
            REPO_ROOT,
        )
    )
    checkpoint = emulated.client.workspace.jobs_dir / interrupted.name / "outputs" / "model" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoint / "last.ckpt").is_file():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    backend.cancel(interrupted.name)
    resumed = backend.run(
        resuming_job(
            _spec(emulated, "echo training", stage=STAGE_FINAL), job_output_uri(interrupted.name, "model")
        )
    )
    assert resumed.status == "Completed", resumed.error
    out = backend.download_output(resumed.job_id, "model", emulated.root / "dl")
    assert (out / "checkpoints" / "last.ckpt").read_text() == "epoch1\n"
    log = (emulated.client.workspace.jobs_dir / resumed.job_id / "user_logs" / "std_log.txt").read_text()
    assert re.search(r"^training --ckpt_path \S+/outputs/model/checkpoints/last\.ckpt$", log, re.M), log


def test_data_preparation_runs_in_the_registered_environment_and_registers_its_output(tmp_path: Path) -> None:
    """Defect 3: environment first; the prepared output (an azureml:// URI) becomes the data asset."""
    config = tmp_path / "pipeline.yaml"
    text = _absolute_paths(SMOKE.read_text()).replace(
        f"  source_dir: {TOY_DATASET}\n",
        f"  prepare:\n    inputs:\n      raw: {TOY_DATASET}\n"
        "    command: cp -R ${{inputs.raw}}/. ${{outputs.data}}/\n",
    )
    config.write_text(text)
    assert list(STEPS).index("environment") < list(STEPS).index("data_asset")
    report = run_pipeline(config, workspace=tmp_path / "ws", until="data_asset", announce=lambda _m: None)
    assert report.ran == ["environment", "data_asset"]
    client = EmulatedMLClient(tmp_path / "ws")
    asset = client.data.get("toy-ner", "1")
    assert asset.tags[TAG_DATASET_FINGERPRINT] == dataset_fingerprint(TOY_DATASET)
    stored = client.resolve(str(asset.path))
    assert (stored / "train.jsonl").read_bytes() == (TOY_DATASET / "train.jsonl").read_bytes()
    (prepare,) = [j for j in client.jobs.list() if j.display_name == "smoke-prepare_data"]
    env = yaml.safe_load(
        (REPO_ROOT / "configs/azure/environment/environment.yaml").read_text(encoding="utf-8")
    )
    assert prepare.status == "Completed" and str(prepare.environment) == f"{env['name']}:{env['version']}"


def test_job_links_list_every_recorded_job_with_status_log_link_and_folder(emulated) -> None:
    """The notebook's job table: what the state records, in pipeline order, as the workspace sees it."""
    from urllib.parse import urlparse

    from launch.report import job_links

    dry = emulated.backend.run(_spec(emulated, "true"))
    final = emulated.backend.run(_spec(emulated, "exit 3", stage=STAGE_FINAL))
    results = {
        "data_asset": {"source": "azureml://jobs/gone-prepare/outputs/data"},
        "dry_run": {"job_id": dry.job_id},
        "sweep": {"parent": {"job_id": "gone-sweep"}, "trials": [{"run_id": dry.run_id}]},
        "final_training": {"job_id": final.job_id},
    }
    table = job_links(results, emulated.client)
    assert table.step.tolist() == [
        "data_asset (prepare)",
        "dry_run",
        "sweep",
        "sweep trial 1",
        "final_training",
    ]
    assert table.job.tolist() == ["gone-prepare", dry.job_id, "gone-sweep", dry.job_id, final.job_id]
    assert table.status.tolist() == ["not found", "Completed", "not found", "Completed", "Failed"]
    dry_row = table.iloc[1]
    assert dry_row.link == emulated.client.jobs.get(dry.job_id).studio_url
    assert Path(urlparse(dry_row.link).path).is_file()  # the job's log on the emulator
    assert (Path(dry_row.folder) / "job.yaml").is_file() and table.link.iloc[0] == ""
    assert f'<a href="{dry_row.link}"' in table.to_html(render_links=True)


def _absolute_paths(text: str) -> str:
    for relative in (
        "../train/base.yaml",
        "../train/tiny.yaml",
        "smoke_train.yaml",
        "smoke_sweep.yaml",
        "../final_training.yaml",
        "../azure/environment",
        "../azure",
        "../../tests/fixtures/toy_dataset",
        "../../tests/fixtures/backbones/tiny-bert",
    ):
        text = text.replace(f" {relative}\n", f" {(SMOKE.parent / relative).resolve()}\n")
    return text


# --- notebook ------------------------------------------------------------------------------
TRAINING_IMPORTS = re.compile(
    r"^\s*(import|from)\s+(torch|lightning|pytorch_lightning|transformers|ner_lightning\.(model|data|cli|callbacks|metrics|onnx))\b",
    re.M,
)


def test_notebook_has_no_outputs_and_no_training_code() -> None:
    notebook = json.loads(NOTEBOOK.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code and all(not cell.get("outputs") and cell.get("execution_count") is None for cell in code)
    for cell in code:
        source = "".join(cell["source"])
        assert not TRAINING_IMPORTS.search(source), source
        assert "subprocess" not in source and ".fit(" not in source


# --- end to end (needs the training and conversion jobs) -----------------------------------
#: Pin the commit: other commits landing between two runs would (rightly) change every job spec.
PINNED_COMMIT = "0" * 40
PINNED_ENV = {**os.environ, "NER_GIT_COMMIT": PINNED_COMMIT}
#: ONNX ops that only an int8 (dynamically quantized) graph holds.
QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}


def _cli_command(workspace: Path, *extra: str, config: Path = SMOKE) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launch.cli",
        "run",
        "--config",
        str(config),
        "--workspace",
        str(workspace),
        *extra,
    ]


def _run_cli(
    workspace: Path, *extra: str, config: Path = SMOKE, check: bool = True
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        _cli_command(workspace, *extra, config=config),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=PINNED_ENV,
    )
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def _config_hashes(*configs: Path) -> dict[str, str]:
    return {
        f"{TAG_CONFIG_SHA256_PREFIX}{c.name}": hashlib.sha256(c.read_bytes()).hexdigest() for c in configs
    }


def _of_stage(runs: list[Run], stage: str) -> list[Run]:
    return [run for run in runs if run.data.tags.get(TAG_STAGE) == stage]


def _assert_job_tags(run: Run, stage: str, hashes: Mapping[str, str]) -> None:
    """A job's run names its stage, config hashes, dataset (name, version, fingerprint) and commit."""
    tags = run.data.tags
    assert tags[TAG_STAGE] == stage and hashes.items() <= tags.items(), tags
    assert (tags[TAG_DATASET_NAME], tags[TAG_DATASET_VERSION]) == ("toy-ner", "1")
    assert tags[TAG_DATASET_FINGERPRINT] == dataset_fingerprint(TOY_DATASET)
    assert tags[TAG_GIT_COMMIT] == PINNED_COMMIT


def _assert_int8_model_folder(folder: Path) -> None:
    """The registered folder: a quantized ONNX graph, every smoke check passed, no checkpoint."""
    graph = onnx.load(str(folder / ONNX_MODEL_FILE)).graph
    assert QUANTIZED_OPS & {node.op_type for node in graph.node}
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    assert any(tensor.data_type in int8 for tensor in graph.initializer)
    assert json.loads((folder / MODEL_METADATA_FILE).read_text())["precision"] == "int8"
    report = json.loads((folder / SMOKE_REPORT_FILE).read_text())
    assert report["passed"] is True and report["checks"]
    assert all(check["passed"] for check in report["checks"]), report["checks"]
    assert not list(folder.rglob("*.ckpt"))


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_then_reuse(tmp_path: Path) -> None:
    config = load_pipeline_config(SMOKE)
    workspace = tmp_path / "ws"
    first = _run_cli(workspace)
    assert "registration: done" in first.stdout
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name(config.experiment).experiment_id], max_results=100
    )
    (dry,), (final,), (conversion,) = (
        _of_stage(runs, s) for s in (STAGE_DRY_RUN, STAGE_FINAL, STAGE_CONVERSION)
    )
    (sweep,) = [r for r in _of_stage(runs, STAGE_SWEEP) if PARENT_RUN_TAG not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get(PARENT_RUN_TAG) == sweep.info.run_id]
    hashes = _config_hashes(*config.train_configs, SMOKE)
    sweep_hashes = {**hashes, **_config_hashes(config.sweep_config)}
    # (a) one run per job: dry run, sweep parent + one child per trial, final, conversion.
    assert len(trials) == load_sweep_config(config.sweep_config).limits.max_total_trials == 2
    assert len(runs) == 4 + len(trials)
    for run, stage in ((dry, STAGE_DRY_RUN), (final, STAGE_FINAL), (conversion, STAGE_CONVERSION)):
        _assert_job_tags(run, stage, hashes)
    for run in (sweep, *trials):
        _assert_job_tags(run, STAGE_SWEEP, sweep_hashes)
    assert all(PRIMARY_METRIC in trial.data.metrics for trial in trials)
    assert dry.data.tags[TAG_PRODUCTION_ELIGIBLE] == "false" and PRIMARY_METRIC in dry.data.metrics
    assert {r.data.tags[TAG_PRODUCTION_ELIGIBLE] for r in (sweep, *trials)} == {"false"}
    assert final.data.tags[TAG_PRODUCTION_ELIGIBLE] == "true"
    # (b) the ranked selection: files in the workspace and artifacts of the sweep run.
    summary = json.loads((workspace / "pipelines" / f"{config.name}_summary.json").read_text())
    selection_folder = Path(summary["selection_folder"])
    selection = json.loads((selection_folder / SELECTION_FILE).read_text())
    assert sorted(row["run_id"] for row in selection["ranked"]) == sorted(t.info.run_id for t in trials)
    assert len((selection_folder / RANKED_FILE).read_text().splitlines()) == 1 + len(trials)
    artifacts = {a.path for a in client.list_artifacts(sweep.info.run_id, "selection")}
    assert {f"selection/{RANKED_FILE}", f"selection/{SELECTION_FILE}"} <= artifacts
    # (c) the registered int8 model version: prod stage, metric, lineage back to the final run.
    emulated = EmulatedMLClient(workspace)
    (version,) = emulated.models.list(name=config.model_name)
    expected = {
        **hashes,
        TAG_STAGE: STAGE_PROD,
        TAG_DATASET_NAME: "toy-ner",
        TAG_DATASET_VERSION: "1",
        TAG_BACKBONE: selection["backbone"],
        TAG_METRIC: PRIMARY_METRIC,
        TAG_METRIC_VALUE: f"{final.data.metrics[PRIMARY_METRIC]:.6f}",
        TAG_FINAL_RUN_ID: final.info.run_id,
        TAG_CONVERSION_RUN_ID: conversion.info.run_id,
        TAG_SWEEP_ID: sweep.info.run_id,
        TAG_PIPELINE: config.name,
        TAG_GIT_COMMIT: PINNED_COMMIT,
        # The conversion job's held-out scores of the registered int8 model, also in the summary.
        HELDOUT_F1_INT8: f"{conversion.data.metrics[HELDOUT_F1_INT8]:.6f}",
    }
    assert expected.items() <= version.tags.items(), version.tags
    assert selection["backbone"] == "azureml:tiny-bert:1"  # the registered backbone, not a checkout path
    assert summary["heldout_f1_int8"] == pytest.approx(conversion.data.metrics[HELDOUT_F1_INT8])
    # The int8 gate's figures and the chosen recipe: conversion run -> model tags and summary.
    for name in CONVERSION_GATE_METRICS:
        assert version.tags[name] == f"{conversion.data.metrics[name]:.6f}", name
    for name in CONVERSION_RECIPE_PARAMS:
        assert version.tags[name] == conversion.data.params[name] == summary["int8_recipe"][name], name
    assert summary["int8_gate"][HELDOUT_GOLD_ENTITIES] == conversion.data.metrics[HELDOUT_GOLD_ENTITIES] > 0
    assert final.data.tags[TAG_SWEEP_ID] == selection["sweep_id"] == sweep.info.run_id
    assert conversion.data.tags[TAG_FINAL_RUN_ID] == final.info.run_id
    _assert_int8_model_folder(emulated.resolve(str(version.path)))
    # (d) every job ran from its serialized YAML (acceptance 3) with a time limit (defect 8), and on
    # Azure ML's runtime contract: the job name is the MLflow run id.
    jobs = {job.name: job for job in emulated.jobs.list()}
    assert {dry.info.run_id, sweep.info.run_id, final.info.run_id, conversion.info.run_id} == set(jobs)
    for name, job in jobs.items():
        stored = load_job(workspace / "jobs" / name / "job.yaml")
        limit = stored.limits.trial_timeout if stored.type == "sweep" else stored.limits.timeout
        assert limit and stored.status is None and job.status == "Completed", name
    assert not [r for r in runs if r.info.status == "RUNNING"]
    registry_before = sorted(p.relative_to(workspace) for p in (workspace / "registry").rglob("*"))

    second = _run_cli(workspace)
    assert (
        "reused: environment, data_asset, dry_run, sweep, selection, final_training, conversion, registration"
        in second.stdout
    )
    assert len(list(emulated.models.list(name=config.model_name))) == 1
    assert sorted(p.relative_to(workspace) for p in (workspace / "registry").rglob("*")) == registry_before
    runs_after = client.search_runs(
        [client.get_experiment_by_name(config.experiment).experiment_id], max_results=100
    )
    assert len(runs_after) == len(runs)


def _records(workspace: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (workspace / "jobs").glob("*/status.json")]


def _wait_for(condition, timeout_s: float = 600):
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return found


def _interrupt(workspace: Path, sig: signal.Signals, ready) -> tuple[str, dict]:
    """Start the pipeline, wait until `ready(records)` names a job, send `sig` to the pipeline process."""
    process = subprocess.Popen(
        _cli_command(workspace),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=PINNED_ENV,
        # A shell without job control starts background commands with SIGINT ignored, and a child
        # inherits that: give the pipeline the disposition an interactive user's process has.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    record = _wait_for(lambda: ready(_records(workspace)))
    process.send_signal(sig)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 130, output
    assert "Run the same command again to resume" in output
    return output, record


@pytest.mark.slow
def test_interrupts_during_sweep_and_final_training_then_resume(tmp_path: Path) -> None:
    """Acceptance 5 and issue 14 item 7: SIGINT during a sweep trial, SIGTERM during final training.

    Each time the job's whole process group ends (the training process itself, not a shell), no
    MLflow run stays RUNNING; the rerun resubmits only the canceled job, resumes final training from
    its last.ckpt through an azureml:// input, and one model version is registered.
    """
    workspace = tmp_path / "ws"
    _run_cli(workspace, "--until", "dry_run")

    def trial_running(records: list[dict]) -> dict | None:
        return next(
            (r for r in records if r.get("parent") and r.get("pgid") and r["status"] == "Running"), None
        )

    _, trial = _interrupt(workspace, signal.SIGINT, trial_running)
    assert not live_in_group(trial["pgid"])

    def final_checkpointed(records: list[dict]) -> dict | None:
        for r in records:
            last = workspace / "jobs" / r["name"] / "outputs" / "model" / "checkpoints" / "last.ckpt"
            if r.get("display_name") == "smoke-final_training" and r.get("pgid") and last.is_file():
                return r
        return None

    _, final = _interrupt(workspace, signal.SIGTERM, final_checkpointed)
    assert not live_in_group(final["pgid"])
    client = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ner-smoke").experiment_id
    assert not [r for r in client.search_runs([experiment], max_results=200) if r.info.status == "RUNNING"]
    assert client.get_run(final["name"]).info.status == "KILLED"

    resumed = _run_cli(workspace)
    assert (
        f"resuming the interrupted final training from azureml://jobs/{final['name']}/outputs/model"
        in resumed.stdout
    )
    assert "reused: environment, data_asset, dry_run, sweep, selection" in resumed.stdout
    emulated = EmulatedMLClient(workspace)
    assert len(list(emulated.models.list(name="ner-smoke"))) == 1
    statuses = {}
    for job in emulated.jobs.list():
        statuses.setdefault(job.display_name, []).append(str(job.status))
    # One canceled attempt each for the interrupted steps, then exactly one completed job per step.
    assert sorted(statuses["smoke-sweep"]) == ["Canceled", "Completed"]
    assert sorted(statuses["smoke-final_training"]) == ["Canceled", "Completed"]
    assert statuses["smoke-dry_run"] == ["Completed"] and statuses["smoke-conversion"] == ["Completed"]


@pytest.mark.slow
def test_bad_data_is_refused_before_any_job_and_a_failing_dry_run_stops_before_the_sweep(
    tmp_path: Path,
) -> None:
    data = tmp_path / "bad_data"
    data.mkdir()
    for name in ("train.jsonl", "validation.jsonl", "labels.json"):
        (data / name).write_bytes((TOY_DATASET / name).read_bytes())
    lines = (data / "train.jsonl").read_text().splitlines()
    broken = json.loads(lines[2])
    broken["ner_tags"] = broken["ner_tags"][:-1]  # one tag fewer than words
    lines[2] = json.dumps(broken)
    (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text(_absolute_paths(SMOKE.read_text()).replace(str(TOY_DATASET), str(data)))
    result = _run_cli(tmp_path / "ws", config=config, check=False)
    # Validated before registration, as on Azure: nothing is uploaded, no job is submitted.
    assert result.returncode == 2
    assert "the dataset folder failed validation" in result.stderr and "train.jsonl" in result.stderr
    assert "dry_run: running" not in result.stdout and not (tmp_path / "ws" / "jobs").exists()
    # A dry run that fails (a training option the CLI refuses) stops the pipeline before the sweep.
    overlay = tmp_path / "broken_train.yaml"
    overlay.write_text("model:\n  no_such_option: 1\n")
    text = _absolute_paths(SMOKE.read_text()).replace(
        f"    - {(SMOKE.parent / 'smoke_train.yaml').resolve()}\n",
        f"    - {(SMOKE.parent / 'smoke_train.yaml').resolve()}\n    - {overlay}\n",
    )
    config.write_text(text)
    result = _run_cli(tmp_path / "ws2", config=config, check=False)
    assert result.returncode == 2
    assert "dry_run job" in result.stderr and "no_such_option" in result.stderr
    assert "sweep: running" not in result.stdout
    # A sweep whose every trial fails (a dropout the model refuses) is recorded failed, not reused:
    # the next run submits it again instead of stopping at selection until `--force sweep`.
    sweep = tmp_path / "failing_sweep.yaml"
    sweep.write_text(
        (SMOKE.parent / "smoke_sweep.yaml")
        .read_text()
        .replace("search_space:\n", "search_space:\n  dropout:\n    type: choice\n    values: [1.5]\n", 1)
    )
    config.write_text(
        _absolute_paths(SMOKE.read_text()).replace(
            str((SMOKE.parent / "smoke_sweep.yaml").resolve()), str(sweep)
        )
    )
    for _attempt in range(2):
        result = _run_cli(tmp_path / "ws3", "--until", "selection", config=config, check=False)
        assert result.returncode != 0, result.stdout[-2000:]
        assert "no trial completed (2 trials)" in result.stderr, result.stderr[-2000:]
        assert "sweep: running" in result.stdout and "selection: running" not in result.stdout


#: Cells a user might run after the notebook: one that fails inside a session block, one
#: interrupted there (the kernel's interrupt button sends SIGINT to the kernel process).
FAILING_CELLS = (
    "with session as pipeline:\n    pipeline.validate()\n    raise RuntimeError('boom')",
    "import os, signal\nwith session as pipeline:\n    os.kill(os.getpid(), signal.SIGINT)",
)


def _displayed(notebook, mime: str) -> list[str]:
    return [
        output["data"][mime]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.get("output_type") == "display_data" and mime in output.get("data", {})
    ]


@pytest.mark.slow
def test_notebook_runs_headless_against_the_local_backend(tmp_path: Path) -> None:
    """The notebook end to end on the smoke preset: tables and charts, no torch in the kernel, and
    the workspace lock free after every cell, after a failing cell and after an interrupted one."""
    import base64

    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    workspace = tmp_path / "ws"
    os.environ["NER_PIPELINE_WORKSPACE"] = str(workspace)
    client = nbclient.NotebookClient(notebook, timeout=900, resources={"metadata": {"path": str(REPO_ROOT)}})
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
                assert lock_is_free(workspace), f"cell {index} left the workspace lock held"
            ran = len(notebook.cells)
            for source in FAILING_CELLS:
                notebook.cells.append(nbformat.v4.new_code_cell(source))
                with pytest.raises(nbclient.exceptions.CellExecutionError):
                    client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
                assert lock_is_free(workspace), source
            probe = nbformat.v4.new_code_cell(
                "import sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
                "('torch', 'lightning', 'pytorch_lightning', 'transformers') or m == 'matplotlib.pyplot'))"
            )
            notebook.cells.append(probe)
            client.execute_cell(probe, len(notebook.cells) - 1)
    finally:
        os.environ.pop("NER_PIPELINE_WORKSPACE")
    # The kernel never imported the training stack, nor pyplot (charts draw on Agg, no GUI backend).
    assert probe.outputs[0]["text"].strip() == "[]"
    del notebook.cells[ran:]
    text = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert "ner-smoke version 1" in text
    # Results as tables and pictures: the ranked trials, the decision, the model, the jobs...
    tables = _displayed(notebook, "text/html")
    assert len([t for t in tables if "<table" in t]) >= 5
    tracking = MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    experiment = tracking.get_experiment_by_name("ner-smoke").experiment_id
    runs = tracking.search_runs([experiment], max_results=100)
    (final,) = _of_stage(runs, STAGE_FINAL)
    trials = [r for r in runs if PARENT_RUN_TAG in r.data.tags]
    (ranked,) = [t for t in tables if "learning_rate" in t and "trial_id" in t]
    assert all(trial.info.run_id in ranked for trial in trials)
    # ...the decision shown before submitting is the one the job recorded...
    (decision,) = [t for t in tables if "spec_fp" in t and "run mode" in t]
    assert final.data.tags["spec_fp"] in decision and final.data.tags["exec_fp"] in decision
    # ...per-type F1 of the registered model's final run, and a link per job.
    (scores,) = [t for t in tables if ">micro<" in t]
    assert all(f">{kind}<" in scores for kind in ("LOC", "ORG", "PER"))
    (jobs,) = [t for t in tables if "<a href=" in t]
    assert f'<a href="file://{workspace}/jobs/{final.info.run_id}/user_logs/std_log.txt"' in jobs
    images = [base64.b64decode(png) for png in _displayed(notebook, "image/png")]
    assert len(images) == 2 and all(png.startswith(b"\x89PNG") for png in images)  # sweep, training curve


def test_continue_from_previous_starts_from_an_azureml_checkpoint(tmp_path: Path) -> None:
    """Defect 5: final-training variants on Azure recorded no checkpoint (an azureml:// output is no
    local file), so `continue_from_previous` could not work there. The variant now records its
    checkpoint as a job-output reference and the next variant starts from it (the job reads it)."""
    from launch.final_training import mark_variant_complete, mark_variant_running
    from tests.final_training.conftest import Project

    project = Project(tmp_path)
    parent = project.load(backend="azure")
    output = job_output_uri("job1", "model")
    mark_variant_running(parent, run_id="job1", job_id="job1", output_dir=output)
    checkpoint = job_output_uri("job1", "model", "checkpoints/best.ckpt")
    mark_variant_complete(parent, checkpoint=checkpoint, metrics={"val_f1": 0.5})
    project.final_config("run:\n  mode: continue_from_previous\nsource:\n  type: final_training\n")
    child = project.load(backend="azure")
    assert child.init_checkpoint == checkpoint and child.action == "train"
    assert dict(child.parent) == {"spec_fp": parent.spec_fp, "exec_fp": parent.exec_fp, "variant": 1}


def test_a_split_edited_after_conversion_is_not_reused_under_its_old_fingerprint(tmp_path: Path) -> None:
    """Issue 14, defect 3: one byte changed in train.jsonl (manifest.json left stale) is new content.

    The data-asset step runs again instead of reporting `reused: data_asset`, and the registry refuses
    to give the registered version new content; no fingerprint ever names two contents.
    """
    from ner_lightning.data.manifest import build_manifest, write_manifest

    dataset = tmp_path / "toy"
    shutil.copytree(TOY_DATASET, dataset)
    # A manifest as `ner-data convert` writes it: right when written, stale after the edit below.
    labels = json.loads((dataset / "labels.json").read_text())
    write_manifest(dataset, build_manifest(dataset, labels=labels, splits={}))
    config = tmp_path / "pipeline.yaml"
    config.write_text(_absolute_paths(SMOKE.read_text()).replace(str(TOY_DATASET), str(dataset)))
    first = run_pipeline(config, workspace=tmp_path / "ws", until="data_asset", announce=lambda _m: None)
    assert "data_asset" in first.ran
    client = EmulatedMLClient(tmp_path / "ws")
    registered = client.data.get("toy-ner", "1").tags[TAG_DATASET_FINGERPRINT]
    assert registered == dataset_fingerprint(dataset)

    train = dataset / "train.jsonl"
    train.write_bytes(train.read_bytes().replace(b'"O"', b'"O" ', 1))  # one byte more, same records
    assert dataset_fingerprint(dataset) != registered  # the stale manifest is not trusted
    # The step runs again (no "reused"): validation names the stale manifest before anything is registered.
    with pytest.raises(LaunchError, match=r"train\.jsonl changed since the manifest was written"):
        run_pipeline(config, workspace=tmp_path / "ws", until="data_asset", announce=lambda _m: None)
    # With a manifest rewritten for the new content, the registry keeps the registered version intact.
    write_manifest(dataset, build_manifest(dataset, labels=labels, splits={}))
    with pytest.raises(LaunchError, match="immutable"):
        run_pipeline(config, workspace=tmp_path / "ws", until="data_asset", announce=lambda _m: None)
    assert client.data.get("toy-ner", "1").tags[TAG_DATASET_FINGERPRINT] == registered
