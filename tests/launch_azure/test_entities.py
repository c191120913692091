"""Builders -> azure-ai-ml entities: offline validation, YAML round trip, bindings, objective."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest
from azure.ai.ml import load_job

from launch.azure.entities import as_job, check_bindings, command_entity, sweep_entity, unbound_placeholders
from launch.azure.submit import outputs_of
from launch.configs import load_config
from launch.errors import LaunchError
from launch.job_specs import JobContext, build_conversion, build_dry_run, build_final_training, build_sweep
from launch.jobs import AssetRef, Distribution, JobInput, job_output_uri
from launch.search_space import PARAMETER_ARGUMENTS, load_sweep_config
from ner_lightning.contract import (
    ENV_CONFIG_HASHES,
    ENV_GIT_COMMIT,
    PRIMARY_METRIC,
    TAG_CONFIG_SHA256_PREFIX,
    TAG_PRODUCTION_ELIGIBLE,
    TAG_STAGE,
)
from tests.conftest import REPO_ROOT
from tests.launch_azure.conftest import CONFIGS, write

logging.getLogger("azure").setLevel(logging.ERROR)
DATASET = AssetRef("wnut16-ner", "3", "f" * 64)
ENVIRONMENT = AssetRef("ner-lightning-env", "1", "e" * 64)
PLACEHOLDER = re.compile(r"\$\{\{\s*(inputs|outputs|search_space)\.(\w+)\s*\}\}")


@pytest.fixture
def ctx(tmp_path) -> JobContext:
    train = load_config(write(tmp_path / "train.yaml", "trainer:\n  max_epochs: 5\n"))
    overlay = load_config(write(tmp_path / "crf.yaml", "model:\n  use_crf: true\n"))
    compute = load_config(CONFIGS / "azure" / "compute.yaml")
    return JobContext(
        experiment_name="ner-phase1",
        dataset=DATASET,
        environment=ENVIRONMENT,
        git_commit="abc1234",
        train_configs=(train, overlay),
        tracked_configs=(compute,),
        display_prefix="t1-",
    )


def _specs(ctx):
    sweep = load_sweep_config(CONFIGS / "sweep.yaml")
    final = build_final_training(
        ctx, {"backbone": "distilbert-base-cased", "learning_rate": 3e-5, "use_crf": True}, seed=7, epochs=4
    )
    return {
        "dry_run": build_dry_run(ctx),
        "sweep": build_sweep(ctx, sweep),
        "final": final,
        "multi_node": build_final_training(
            ctx,
            {"learning_rate": 3e-5},
            seed=7,
            distribution=Distribution(instance_count=2, process_count_per_instance=4),
        ),
        # The value the pipeline passes: the final job's result, `JobResult.outputs["model"]`.
        "conversion": build_conversion(
            ctx, JobInput(type="job_output", value=outputs_of("final_job_1", ("model",))["model"])
        ),
    }


def _entity(spec, compute_config):
    if hasattr(spec, "search_space"):
        return sweep_entity(spec, compute_config, REPO_ROOT)
    return command_entity(spec, compute_config, REPO_ROOT)


@pytest.mark.parametrize("which", ["dry_run", "sweep", "final", "multi_node", "conversion"])
def test_entity_validates_offline_and_round_trips_through_yaml(ctx, compute_config, tmp_path, which):
    entity = _entity(_specs(ctx)[which], compute_config)
    result = entity._validate()
    assert result.passed, result
    job = as_job(entity)
    path = tmp_path / f"{which}.yaml"
    job.dump(path)
    loaded = as_job(load_job(path))
    assert type(loaded) is type(job)
    assert loaded._to_dict() == job._to_dict()


@pytest.mark.parametrize("which", ["dry_run", "sweep", "final", "multi_node", "conversion"])
def test_every_placeholder_is_bound(ctx, compute_config, which):
    spec = _specs(ctx)[which]
    check_bindings(spec)
    job = as_job(_entity(spec, compute_config))
    command = job.trial.command if hasattr(job, "trial") else job.command
    names = {
        "inputs": set(job.inputs),
        "outputs": set(job.outputs),
        "search_space": set(getattr(job, "search_space", None) or {}),
    }
    found = PLACEHOLDER.findall(command)
    assert found
    for kind, name in found:
        assert name in names[kind], f"${{{{{kind}.{name}}}}} unbound in {command}"


def test_unbound_placeholder_is_refused(ctx, compute_config):
    from dataclasses import replace

    spec = build_dry_run(ctx)
    broken = replace(spec, command=spec.command + " --model.backbone ${{inputs.backbone}}")
    assert unbound_placeholders(broken.command, broken.inputs, broken.outputs) == ["${{inputs.backbone}}"]
    with pytest.raises(LaunchError, match="unbound"):
        command_entity(broken, compute_config, REPO_ROOT)


def test_sweep_objective_is_the_metric_training_logs(ctx, compute_config):
    job = as_job(_entity(_specs(ctx)["sweep"], compute_config))
    assert job.objective.primary_metric == PRIMARY_METRIC == "val_f1"
    assert job.objective.goal.lower() == "maximize"


def test_sweep_search_space_limits_and_policy(ctx, compute_config):
    sweep = load_sweep_config(CONFIGS / "sweep.yaml")
    job = as_job(_entity(_specs(ctx)["sweep"], compute_config))
    assert set(job.search_space) == set(sweep.search_space)
    lr = job.search_space["learning_rate"]
    assert math.isclose(lr.min_value, math.log(sweep.search_space["learning_rate"].min_value))
    assert job.search_space["use_crf"].values == ["true", "false"]
    assert job.limits.max_total_trials == sweep.limits.max_total_trials
    assert job.limits.trial_timeout == sweep.limits.trial_timeout_s
    assert job.early_termination.type.lower().startswith("median")
    for name, argument in PARAMETER_ARGUMENTS.items():
        if name in sweep.search_space:
            assert f"{argument} ${{{{search_space.{name}}}}}" in job.trial.command
    assert job.compute.endswith(compute_config.cluster_name("gpu"))


def test_inputs_reference_assets_by_name_and_version_and_configs_as_files(ctx, compute_config):
    job = as_job(_entity(_specs(ctx)["dry_run"], compute_config))
    assert job.inputs["data"].path == "azureml:wnut16-ner:3"
    assert job.inputs["train_config"].type == "uri_file"
    assert Path(job.inputs["train_config"].path).name == "train.yaml"
    assert Path(job.inputs["overlay_1"].path).name == "crf.yaml"
    assert job.environment in ("azureml:ner-lightning-env:1", "ner-lightning-env:1")
    assert "--config ${{inputs.train_config}} --config ${{inputs.overlay_1}}" in job.command


def test_every_job_carries_lineage_tags_and_env_vars(ctx):
    for which, spec in _specs(ctx).items():
        trial = getattr(spec, "trial", spec)
        tags = trial.tags
        assert {"config_sha256.train.yaml", "config_sha256.crf.yaml", "config_sha256.compute.yaml"} <= set(
            tags
        ), which
        assert tags["dataset_name"] == "wnut16-ner" and tags["dataset_version"] == "3"
        assert tags["dataset_fingerprint"] == DATASET.fingerprint
        assert tags["environment_name"] == "ner-lightning-env" and tags["environment_version"] == "1"
        assert tags["git_commit"] == "abc1234" and tags[TAG_STAGE]
        assert trial.env_vars[ENV_GIT_COMMIT] == "abc1234"
        assert "train.yaml" in trial.env_vars[ENV_CONFIG_HASHES]
        assert trial.experiment_name == "ner-phase1" and trial.display_name.startswith("t1-")
    sweep_tags = _specs(ctx)["sweep"].trial.tags
    assert TAG_CONFIG_SHA256_PREFIX + "sweep.yaml" in sweep_tags


def test_dry_run_is_small_and_not_production_eligible(ctx):
    spec = build_dry_run(ctx, limit_batches=3)
    assert "--trainer.max_epochs 1" in spec.command
    assert (
        "--trainer.limit_train_batches 3" in spec.command and "--trainer.limit_val_batches 3" in spec.command
    )
    assert spec.tags[TAG_STAGE] == "dry_run" and spec.tags[TAG_PRODUCTION_ELIGIBLE] == "false"
    assert spec.distribution is None and spec.compute == "gpu"


def test_final_training_command(ctx):
    spec = _specs(ctx)["final"]
    for part in (
        "--model.backbone distilbert-base-cased",
        "--model.learning_rate 3e-05",
        "--model.use_crf true",
        "--trainer.max_epochs 4",
        "--data.combine_train_validation true",
        "--seed_everything 7",
        "--early_stopping.enabled false",
        "--onnx_export.enabled true",
    ):
        assert part in spec.command
    assert spec.tags[TAG_STAGE] == "final_training" and spec.tags[TAG_PRODUCTION_ELIGIBLE] == "true"
    with pytest.raises(LaunchError, match="unknown hyperparameter"):
        build_final_training(ctx, {"hidden_size": 3}, seed=1)


def test_multi_node_matches_lightning_to_the_distribution(ctx, compute_config):
    job = as_job(_entity(_specs(ctx)["multi_node"], compute_config))
    assert job.resources.instance_count == 2
    assert job.distribution.process_count_per_instance == 4
    assert "--trainer.num_nodes 2" in job.command and "--trainer.devices 4" in job.command


def test_conversion_runs_on_the_cpu_cluster_on_the_final_output(ctx, compute_config):
    spec = _specs(ctx)["conversion"]
    assert spec.command.startswith(
        "python -m ner_lightning.onnx.convert --input ${{inputs.model}} --output ${{outputs.model}} --data ${{inputs.data}}"
    )
    job = as_job(_entity(spec, compute_config))
    assert job.compute.endswith(compute_config.cluster_name("cpu"))
    assert job.inputs["model"].path == "azureml://jobs/final_job_1/outputs/model"


def test_job_output_references_have_one_form_end_to_end(ctx, compute_config, tmp_path):
    """Defect 1: the conversion input is exactly the final job's output URI (was
    `azureml://jobs/azureml:/outputs//jobs/<job>/outputs/model`), in the entity and in its YAML."""
    uri = outputs_of("a1b2c3", ("model",))["model"]
    assert uri == job_output_uri("a1b2c3", "model") == "azureml://jobs/a1b2c3/outputs/model"
    job = as_job(_entity(build_conversion(ctx, JobInput("job_output", uri)), compute_config))
    job.dump(tmp_path / "conversion.yaml")
    assert load_job(tmp_path / "conversion.yaml").inputs["model"].path == uri
    nested = job_output_uri("a1b2c3", "model", "checkpoints/last.ckpt")
    assert (
        as_job(_entity(build_conversion(ctx, JobInput("job_output", nested)), compute_config))
        .inputs["model"]
        .path
        == "azureml://jobs/a1b2c3/outputs/model/paths/checkpoints/last.ckpt"
    )
    for bad in ("final_job_1/model", "azureml://jobs/x", "/tmp/model"):
        with pytest.raises(LaunchError, match="is not azureml://jobs/<job>/outputs/<output>"):
            _entity(build_conversion(ctx, JobInput("job_output", bad)), compute_config)
