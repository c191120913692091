"""Merge precedence (training defaults -> best configuration -> YAML) and dataset resolution."""

from __future__ import annotations

import json

import pytest

from ner_lightning.errors import ConfigError

TRAIN = {
    "seed_everything": 7,
    "model": {"backbone": "base-backbone", "learning_rate": 1e-3, "dropout": 0.2, "weight_decay": 0.05},
    "data": {"batch_size": 8},
    "trainer": {"max_epochs": 10, "precision": "bf16-mixed", "accumulate_grad_batches": 2},
    "early_stopping": {"enabled": True, "patience": 5},
}


def test_precedence_defaults_then_best_then_yaml(project) -> None:
    project.final_config("training:\n  epochs: 4\n  dropout: null\n  early_stopping:\n    patience: 9\n")
    best = {
        "backbone": "best-backbone",
        "params": {"model.learning_rate": 2e-4, "data.batch_size": 16, "trainer.max_epochs": 6},
    }
    resolved = project.load(best=best, train=TRAIN, claim=False)
    hp = resolved.hyperparameters
    assert resolved.backbone == "best-backbone"  # best beats defaults
    assert hp["learning_rate"] == 2e-4 and hp["batch_size"] == 16  # best beats defaults
    assert hp["epochs"] == 4  # YAML beats best
    assert hp["dropout"] == 0.2 and hp["weight_decay"] == 0.05  # null keeps the default
    assert hp["gradient_accumulation_steps"] == 2
    assert hp["early_stopping.patience"] == 9
    # The plan's final-training base (train + validation, no early stopping) beats the training
    # configs; only final_training.yaml turns them back (issue 12: the job ran what metadata says).
    assert hp["early_stopping.enabled"] is False and hp["combine_train_validation"] is True
    assert resolved.seed == 7 and resolved.precision == "bf16-mixed"
    args = resolved.training_arguments()
    assert "--trainer.max_epochs=4" in args and "--model.learning_rate=0.0002" in args
    assert "--seed_everything=7" in args and "--data.combine_train_validation=true" in args


def test_seed_precedence(project) -> None:
    assert project.load(train={}, claim=False).seed == 42
    assert project.load(train=TRAIN, claim=False).seed == 7
    project.final_config("seed:\n  random_seed: 123\n")
    assert project.load(train=TRAIN, claim=False).seed == 123


def test_final_training_turns_early_stopping_off_unless_configured(project) -> None:
    resolved = project.load(train={}, claim=False)
    assert resolved.hyperparameters["early_stopping.enabled"] is False
    assert "--early_stopping.enabled=false" in resolved.training_arguments()


def test_train_yaml_is_read_when_no_training_config_is_given(project) -> None:
    project.write_yaml("train.yaml", TRAIN)
    from launch.final_training import load_final_training_config

    resolved = load_final_training_config(
        project.root,
        project.config_dir,
        {"backbone": "b"},
        project.experiment,
        None,
        claim=False,
        git_commit="x",
    )
    assert resolved.hyperparameters["learning_rate"] == 1e-3 and resolved.seed == 7


def test_missing_backbone(project) -> None:
    with pytest.raises(ConfigError, match="no backbone"):
        project.load(best={"params": {}}, claim=False)


def test_dataset_from_experiment_default(project) -> None:
    dataset = project.load(claim=False).dataset
    assert (dataset.name, dataset.version, dataset.data_config) == ("toy", "1", "data/toy.yaml")
    assert dataset.local_path == str(project.dataset)
    assert dataset.labels[0] == "O" and "B-PER" in dataset.labels
    assert len(dataset.fingerprint) == 64


def test_dataset_from_explicit_data_config(project, tmp_path) -> None:
    other = tmp_path / "other_data"
    other.mkdir()
    for name in ("train.jsonl", "validation.jsonl"):
        (other / name).write_text('{"tokens": ["Bob"], "ner_tags": ["B-PER"]}\n', encoding="utf-8")
    (other / "manifest.json").write_text(json.dumps({"fingerprint": "manifest-fp"}), encoding="utf-8")
    project.write_yaml("data/other.yaml", {"name": "other", "version": "5", "local_path": str(other)})
    project.final_config("dataset:\n  data_config: data/other.yaml\n")
    dataset = project.load(claim=False).dataset
    from ner_lightning.data.manifest import dataset_fingerprint as content_fingerprint

    # The files are hashed: a manifest naming another fingerprint is stale, never trusted (issue 14, #3).
    assert (dataset.name, dataset.version, dataset.fingerprint) == ("other", "5", content_fingerprint(other))
    assert dataset.labels == ("O", "B-PER", "I-PER")  # derived: no labels.json


def test_dataset_local_path_override(project, tmp_path) -> None:
    project.final_config(f"dataset:\n  local_path_override: {project.dataset}\n")
    dataset = project.load(claim=False).dataset
    assert dataset.local_path == str(project.dataset) and dataset.name == "toy"
    project.experiment = {"name": "exp"}
    assert project.load(claim=False).dataset.version == "local"


def test_dataset_missing_everywhere_or_absent(project) -> None:
    project.experiment = {"name": "exp"}
    with pytest.raises(ConfigError, match="no dataset") as caught:
        project.load(claim=False)
    assert caught.value.field == "dataset"
    project.final_config("dataset:\n  data_config: data/missing.yaml\n")
    with pytest.raises(ConfigError, match="does not exist"):
        project.load(claim=False)
    project.final_config("dataset:\n  local_path_override: nowhere\n")
    with pytest.raises(ConfigError, match="does not exist"):
        project.load(claim=False)
