"""configs/pipeline/azure.yaml: the preset a user with a workspace runs as is (acceptance 6).

Every job it submits validates offline with the SDK and round-trips through YAML; multi-node
builds with Lightning arguments that match the distribution; `--cpu` swaps only the GPU overlay;
a sweep that cannot fit the GPU cluster is refused before anything is submitted.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import yaml
from azure.ai.ml import load_job

from launch.azure.backend import AzureBackend
from launch.azure.entities import as_job, command_entity, sweep_entity
from launch.azure.environment import load_environment
from launch.configs import load_config
from launch.errors import LaunchError
from launch.job_specs import (
    BACKBONE_INPUT,
    JobContext,
    build_conversion,
    build_dry_run,
    build_final_training,
    build_sweep,
)
from launch.jobs import AssetRef, Distribution, JobInput, job_output_uri
from launch.pipeline import load_pipeline_config
from launch.search_space import load_sweep_config
from tests.conftest import REPO_ROOT
from tests.launch_azure.conftest import CONFIGS, FakeMLClient

logging.getLogger("azure").setLevel(logging.ERROR)
AZURE = CONFIGS / "pipeline" / "azure.yaml"


def _specs(config):
    env = load_environment(config.environment)
    ctx = JobContext(
        experiment_name=config.experiment,
        dataset=AssetRef(config.dataset_name, config.dataset_version, "f" * 64),
        environment=AssetRef(env.name, env.version, "e" * 64),
        git_commit="abc",
        train_configs=tuple(load_config(p) for p in config.train_configs),
        tracked_configs=(config.source,),
        backbone=AssetRef(config.backbone.name, config.backbone.version, "b" * 64),
    )
    final = build_final_training(
        ctx,
        {"learning_rate": 5e-5, "use_crf": True},
        seed=7,
        epochs=config.final_epochs,
        distribution=config.distribution,
        timeout_s=config.timeouts["final_training"],
    )
    return {
        "dry_run": build_dry_run(ctx, timeout_s=config.timeouts["dry_run"]),
        "sweep": build_sweep(ctx, load_sweep_config(config.sweep_config), distribution=config.distribution),
        "final": final,
        "conversion": build_conversion(
            ctx,
            JobInput("job_output", job_output_uri("f1", "model")),
            timeout_s=config.timeouts["conversion"],
        ),
    }


def _entity(spec, compute):
    build = sweep_entity if hasattr(spec, "search_space") else command_entity
    return build(spec, compute, REPO_ROOT)


@pytest.mark.parametrize("which", ["dry_run", "sweep", "final", "conversion"])
def test_every_job_of_the_preset_validates_offline_and_round_trips(compute_config, tmp_path, which):
    config = load_pipeline_config(AZURE)
    entity = _entity(_specs(config)[which], compute_config)
    assert entity._validate().passed
    job = as_job(entity)
    job.dump(tmp_path / "job.yaml")
    loaded = as_job(load_job(tmp_path / "job.yaml"))
    assert loaded._to_dict() == job._to_dict()
    limits = loaded.limits
    assert limits.trial_timeout if which == "sweep" else limits.timeout, "every job has a time limit"
    if which != "conversion":  # training jobs read the registered backbone and the registered dataset
        assert str(loaded.inputs[BACKBONE_INPUT].path).removeprefix("azureml:") == "all-minilm-l6-v2:1"
        assert str(loaded.inputs["data"].path).removeprefix("azureml:") == "wnut16-ner:1"
        command = loaded.trial.command if which == "sweep" else loaded.command
        assert "--model.backbone ${{inputs.backbone}}" in command


def test_gpu_overlay_and_the_cpu_switch(compute_config):
    config = load_pipeline_config(AZURE)
    gpu = yaml.safe_load((CONFIGS / "pipeline" / "azure_gpu.yaml").read_text())["trainer"]
    assert gpu["accelerator"] == "gpu" and gpu["precision"] == "bf16-mixed"
    names = [p.name for p in config.train_configs]
    assert names == ["base.yaml", "azure_gpu.yaml"]
    assert [p.name for p in config.on_cpu().train_configs] == ["base.yaml", "cpu.yaml"]
    with pytest.raises(LaunchError, match=r"--cpu needs `training\.accelerator`"):
        load_pipeline_config(CONFIGS / "pipeline" / "smoke.yaml").on_cpu()


def test_two_nodes_of_two_processes_build_matching_lightning_arguments(compute_config):
    config = replace(load_pipeline_config(AZURE), distribution=Distribution(2, 2))
    job = as_job(_entity(_specs(config)["final"], compute_config))
    assert job.resources.instance_count == 2 and job.distribution.process_count_per_instance == 2
    assert "--trainer.num_nodes 2" in job.command and "--trainer.devices 2" in job.command


def test_a_sweep_bigger_than_the_gpu_cluster_is_refused_before_submission(compute_config):
    config = replace(load_pipeline_config(AZURE), distribution=Distribution(2, 2))
    client = FakeMLClient()
    backend = AzureBackend(client, compute_config, REPO_ROOT, stream_logs=False, announce=lambda _m: None)
    with pytest.raises(LaunchError, match=r"4 concurrent trials x 2 node\(s\) = 8 nodes.*max_instances=4"):
        backend.run_sweep(_specs(config)["sweep"])
    assert client.jobs.submitted == []


@pytest.mark.parametrize("preset", ["smoke", "small", "azure"])
def test_training_jobs_resolve_their_backbone_inside_the_job(preset):
    """Defect 2: tiny.yaml's backbone lies under tests/, which `.amlignore` keeps out of the code
    snapshot, and base.yaml's `pkg:` backbone needs a package the environment does not install.
    Every preset now passes the backbone as a registered data asset input."""
    from launch.local.snapshot import snapshot_files

    config = load_pipeline_config(CONFIGS / "pipeline" / f"{preset}.yaml")
    named = [load_config(p).get("model.backbone") for p in config.train_configs]
    backbone = next((str(b) for b in reversed(named) if b), "")
    snapshot = {relative for _, relative in snapshot_files(REPO_ROOT)}
    in_snapshot = any(relative.startswith(f"{backbone.rstrip('/')}/") for relative in snapshot)
    assert not in_snapshot, f"{preset}: {backbone} would be read from the snapshot"
    assert config.backbone is not None, f"{preset}: the job could not load {backbone}"
    command = _specs(replace(config, distribution=None))["dry_run"].command
    assert "--model.backbone ${{inputs.backbone}}" in command
