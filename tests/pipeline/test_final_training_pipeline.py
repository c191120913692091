"""Issue 12, acceptance 1-4 through the pipeline: final_training.yaml decides what the final job trains.

One smoke pipeline runs once (module fixture, local backend); every test then edits its own copy of
final_training.yaml and runs `run_pipeline` again, and asserts on what the job really did: the
trained checkpoint's hyperparameters and weights, the job's `effective_config.json`, the MLflow
tags, the variant folders. Every test runs at least one training job: all are `slow`; the fast
checks of the same code live in tests/final_training/.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient

from launch.errors import LaunchError
from launch.final_training import mark_variant_running
from launch.jobs import AssetRef, CommandJobSpec, job_output_uri
from launch.local import EmulatedMLClient
from launch.pipeline import STEPS, Pipeline, load_pipeline_config, make_backend, run_pipeline
from launch.search_space import PARAMETER_ARGUMENTS
from launch.steps import final_training as step
from launch.variants import METADATA_FILE
from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    EFFECTIVE_CONFIG_FILE,
    ENV_CHECKPOINT_PATH,
    LAST_CHECKPOINT,
    STAGE_CONVERSION,
    STAGE_DRY_RUN,
    STAGE_FINAL,
    STAGE_SWEEP,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_STAGE,
)
from tests.conftest import REPO_ROOT
from tests.pipeline.test_pipeline import PINNED_COMMIT, SMOKE, _absolute_paths

pytestmark = pytest.mark.slow

FINAL_YAML = REPO_ROOT / "configs" / "final_training.yaml"
AZURE_COMPUTE = REPO_ROOT / "configs" / "azure" / "compute.yaml"


def _final_text(**replacements: str) -> str:
    """The shipped final_training.yaml with `key: null`-style lines replaced (`"  mode: ..."` -> new)."""
    text = FINAL_YAML.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("final")
    final_yaml = root / "final_training.yaml"
    final_yaml.write_bytes(FINAL_YAML.read_bytes())
    config = root / "pipeline.yaml"
    text = _absolute_paths(SMOKE.read_text()).replace(str(FINAL_YAML.resolve()), str(final_yaml))
    config.write_text(text)
    workspace = root / "ws"
    previous = os.environ.get("NER_GIT_COMMIT")
    os.environ["NER_GIT_COMMIT"] = PINNED_COMMIT
    lines: list[str] = []

    def run(*, until: str | None = None, force: tuple[str, ...] = (), announce=None):
        del lines[:]
        return run_pipeline(
            config,
            workspace=workspace,
            until=until,
            force=force,
            code_dir=REPO_ROOT,
            announce=announce or lines.append,
        )

    first = run()
    first_lines = list(lines)
    second = run()  # nothing edited
    yield SimpleNamespace(
        root=root,
        config=config,
        final_yaml=final_yaml,
        workspace=workspace,
        run=run,
        lines=lines,
        first=first,
        first_lines=first_lines,
        second=second,
        client=EmulatedMLClient(workspace),
        mlflow=MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}"),
    )
    if previous is None:
        os.environ.pop("NER_GIT_COMMIT", None)
    else:
        os.environ["NER_GIT_COMMIT"] = previous


def _state(smoke, step_name: str = "final_training") -> dict:
    return json.loads((smoke.workspace / "pipelines" / "smoke.json").read_text())["steps"][step_name][
        "result"
    ]


def _output(smoke, result: dict) -> Path:
    return smoke.client.resolve(result["outputs"]["model"])


def _checkpoint(smoke, result: dict, name: str = BEST_CHECKPOINT) -> dict:
    return torch.load(_output(smoke, result) / CHECKPOINT_DIR / name, weights_only=False, map_location="cpu")


def _effective(smoke, result: dict) -> dict:
    return json.loads((_output(smoke, result) / CHECKPOINT_DIR / EFFECTIVE_CONFIG_FILE).read_text())


def _metadata(result: dict) -> dict:
    return json.loads((Path(result["variant"]["path"]) / METADATA_FILE).read_text())


def _final_jobs(smoke) -> list[str]:
    return [
        job.name
        for job in smoke.client.jobs.list()
        if str(job.display_name).startswith("smoke-final_training")
    ]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- acceptance 2 and 4 on the first run ---------------------------------------------------------
def test_editing_nothing_reuses_everything(smoke) -> None:
    assert smoke.first.ran == list(STEPS[1:])
    assert smoke.second.reused == list(STEPS[1:]) and smoke.second.ran == []


def test_every_job_carries_the_sha256_of_every_config_it_depends_on(smoke) -> None:
    config = load_pipeline_config(smoke.config)
    base = {c.name: _sha(c) for c in (*config.train_configs, smoke.config, AZURE_COMPUTE)}
    sweep = {**base, config.sweep_config.name: _sha(config.sweep_config)}
    final = {**sweep, "final_training.yaml": _sha(FINAL_YAML)}  # the copy is byte-identical so far
    expected = {STAGE_DRY_RUN: base, STAGE_SWEEP: sweep, STAGE_FINAL: final, STAGE_CONVERSION: final}
    experiment = smoke.mlflow.get_experiment_by_name(config.experiment).experiment_id
    runs = smoke.mlflow.search_runs([experiment], max_results=200)
    assert {r.data.tags[TAG_STAGE] for r in runs} == set(expected)
    for run in runs:
        hashes = {
            f"{TAG_CONFIG_SHA256_PREFIX}{name}": sha
            for name, sha in expected[run.data.tags[TAG_STAGE]].items()
        }
        assert hashes.items() <= run.data.tags.items(), (run.data.tags[TAG_STAGE], run.data.tags)
    (model,) = smoke.client.models.list(name=config.model_name)
    assert {f"{TAG_CONFIG_SHA256_PREFIX}{n}": s for n, s in final.items()}.items() <= model.tags.items()


def test_the_job_ran_what_the_variant_metadata_records(smoke) -> None:
    """The job's effective_config.json and its checkpoint agree with metadata.json, key by key."""
    result = _state(smoke)
    metadata, effective = _metadata(result), _effective(smoke, result)
    compared = 0
    for name, value in metadata["hyperparameters"].items():
        if value is None or name not in PARAMETER_ARGUMENTS:
            continue
        node = effective
        for part in PARAMETER_ARGUMENTS[name].removeprefix("--").split("."):
            node = node[part]
        assert node == value, name
        compared += 1
    assert compared >= 10 and effective["seed_everything"] == metadata["seed"]
    hparams = _checkpoint(smoke, result)["hyper_parameters"]
    assert hparams["learning_rate"] == metadata["hyperparameters"]["learning_rate"] == 0.001  # HPO best
    assert metadata["hyperparameters"]["epochs"] == effective["trainer"]["max_epochs"] == 2  # budget
    assert (
        effective["data"]["combine_train_validation"] is True
        and effective["early_stopping"]["enabled"] is False
    )
    assert (
        effective["model"]["init_checkpoint"] is None
        and effective["environment"][ENV_CHECKPOINT_PATH] is None
    )


# --- acceptance 1 and 2: an override and a source type, through the pipeline ------------------
def test_a_training_override_redoes_final_training_conversion_and_registration(smoke) -> None:
    smoke.final_yaml.write_text(
        _final_text(
            **{"  learning_rate: null": "  learning_rate: 0.002", "  type: hpo_best": "  type: scratch"}
        )
    )
    report = smoke.run()
    assert report.ran == ["final_training", "conversion", "registration"]
    assert report.reused == ["environment", "data_asset", "dry_run", "sweep", "selection"]
    result = _state(smoke)
    assert _checkpoint(smoke, result)["hyper_parameters"]["learning_rate"] == 0.002
    effective = _effective(smoke, result)
    assert effective["model"]["learning_rate"] == 0.002 and effective["model"]["init_checkpoint"] is None
    assert _metadata(result)["config_sha256"] == _sha(smoke.final_yaml)
    conversion = _state(smoke, "conversion")
    assert smoke.mlflow.get_run(conversion["run_id"]).data.tags[
        f"{TAG_CONFIG_SHA256_PREFIX}final_training.yaml"
    ] == _sha(smoke.final_yaml)


# --- acceptance 3: --force under reuse_if_exists and force_new ------------------------------
def test_force_reuses_under_reuse_if_exists_and_force_new_opens_the_next_variant(smoke) -> None:
    smoke.final_yaml.write_bytes(FINAL_YAML.read_bytes())  # the first run's file: its variant is complete
    jobs = _final_jobs(smoke)
    reused = smoke.run(until="final_training", force=("final_training",))
    assert reused.reused[-1] == "final_training" and _final_jobs(smoke) == jobs
    first = _state(smoke)
    assert first["variant"]["number"] == 1 and first["variant"]["action"] == "skip"
    v1 = (Path(first["variant"]["path"]) / METADATA_FILE).read_bytes()
    assert any("--force final_training: run mode reuse_if_exists reuses it" in line for line in smoke.lines)

    smoke.final_yaml.write_text(_final_text(**{"  mode: reuse_if_exists": "  mode: force_new"}))
    forced = smoke.run(until="final_training", force=("final_training",))
    second = _state(smoke)
    assert forced.ran == ["final_training"] and len(_final_jobs(smoke)) == len(jobs) + 1
    assert second["variant"]["number"] == 2 and second["variant"]["spec_fp"] == first["variant"]["spec_fp"]
    assert (Path(first["variant"]["path"]) / METADATA_FILE).read_bytes() == v1  # never rewritten


def test_resume_if_incomplete_resumes_the_interrupted_variant(smoke) -> None:
    smoke.final_yaml.write_text(
        _final_text(
            **{"  mode: reuse_if_exists": "  mode: resume_if_incomplete", "  epochs: null": "  epochs: 3"}
        )
    )
    config = replace(load_pipeline_config(smoke.config), workspace=smoke.workspace)
    backend = make_backend(config, "local", REPO_ROOT, announce=lambda _m: None)
    try:
        # An interrupted attempt: a job that wrote the first run's (2-epoch) checkpoints, then failed.
        source = _output(smoke, json.loads(json.dumps(_first_final(smoke)))) / CHECKPOINT_DIR
        env = _state(smoke, "environment")
        failed = backend.run(
            CommandJobSpec(
                name="final_training",
                stage=STAGE_FINAL,
                command=f"mkdir -p ${{{{outputs.model}}}}/checkpoints && cp {source}/*.ckpt "
                "${{outputs.model}}/checkpoints/ && exit 1",
                inputs={},
                outputs=("model",),
                compute="cpu",
                environment=AssetRef(env["name"], env["version"]),
                experiment_name="ner-smoke",
                display_name="interrupted",
                tags={TAG_STAGE: STAGE_FINAL},
                timeout_s=300,
            )
        )
        assert failed.status == "Failed"
        pipeline = Pipeline(
            config, backend, smoke.workspace / "pipelines", REPO_ROOT, announce=lambda _m: None
        )
        claimed = step.resolve(pipeline, pipeline._need("selection")["selection"], claim=True)
        mark_variant_running(
            claimed,
            job_id=failed.job_id,
            run_id=failed.run_id,
            output_dir=job_output_uri(failed.job_id, "model"),
        )
    finally:
        backend.ml_client.close()
    smoke.run(until="final_training")
    result = _state(smoke)
    assert (result["variant"]["number"], result["variant"]["action"]) == (claimed.variant, "resume")
    assert result["resumed_from"] == failed.job_id
    assert any(
        f"resuming the interrupted final training from azureml://jobs/{failed.job_id}" in line
        for line in smoke.lines
    )
    copied = torch.load(source / LAST_CHECKPOINT, weights_only=False, map_location="cpu")
    resumed = _checkpoint(smoke, result, LAST_CHECKPOINT)
    assert resumed["global_step"] == copied["global_step"] * 3 // 2  # epoch 3 only, from the copied state
    assert _metadata(result)["status"] == "complete"


def _first_final(smoke) -> dict:
    """The first run's final-training result (variant 1 of the shipped file)."""
    experiment = smoke.mlflow.get_experiment_by_name("ner-smoke").experiment_id
    runs = smoke.mlflow.search_runs(
        [experiment], "tags.stage = 'final_training'", order_by=["attributes.start_time ASC"]
    )
    return {"outputs": {"model": job_output_uri(runs[0].info.run_id, "model")}}


@pytest.mark.parametrize("source", ["final_training", "hpo_best"])
def test_a_new_variant_starts_from_the_weights_of_its_source(smoke, source: str) -> None:
    """continue_from_previous starts from the parent's weights, hpo_best (load: true) from the trial's.

    With a learning rate of 1e-30 one epoch leaves the weights as they started.
    """
    changes = {"  learning_rate: null": "  learning_rate: 1.0e-30", "  epochs: null": "  epochs: 1"}
    if source == "final_training":
        changes |= {
            "  mode: reuse_if_exists": "  mode: continue_from_previous",
            "  type: hpo_best": "  type: final_training",
            "  load: false": "  load: null",
        }
    else:
        changes |= {"  load: false": "  load: true"}
    smoke.final_yaml.write_text(_final_text(**changes))
    smoke.run(until="final_training")
    result = _state(smoke)
    metadata, effective = _metadata(result), _effective(smoke, result)
    start = metadata["init_checkpoint"]
    if source == "hpo_best":
        assert start == _state(smoke, "selection")["selection"]["checkpoint"]
    else:
        assert metadata["parent"]["variant"] >= 1 and start.endswith(".ckpt")
    assert effective["model"]["init_checkpoint"] and effective["environment"][ENV_CHECKPOINT_PATH]
    parent = torch.load(smoke.client.resolve(start), weights_only=False, map_location="cpu")["state_dict"]
    trained = _checkpoint(smoke, result)
    assert trained["hyper_parameters"]["learning_rate"] == 1e-30
    assert _same_weights(trained["state_dict"], parent)


def test_editing_final_training_yaml_while_its_variant_trains_stops_before_conversion(smoke) -> None:
    smoke.final_yaml.write_text(
        _final_text(**{"  mode: reuse_if_exists": "  mode: force_new", "  epochs: null": "  epochs: 1"})
    )
    before = _sha(smoke.final_yaml)

    def announce(line: str) -> None:
        smoke.lines.append(line)
        if line.startswith("submitted final_training"):
            smoke.final_yaml.write_text(smoke.final_yaml.read_text() + "# edited during the run\n")

    with pytest.raises(LaunchError, match=r"changed while variant v\d+ was training") as caught:
        smoke.run(announce=announce)
    assert "run the pipeline again" in caught.value.fix
    assert not any(line.startswith("[8/9] conversion") for line in smoke.lines)
    variants = [json.loads(p.read_text()) for p in smoke.workspace.rglob(METADATA_FILE)]
    latest = max(variants, key=lambda m: m["created_at"])
    assert latest["status"] == "complete" and latest["config_sha256"] == before
