"""Every validation rule of final_training.yaml: the error names file, line, field and fix."""

from __future__ import annotations

import pytest

from ner_lightning.errors import ConfigError


def _error(project, text: str) -> ConfigError:
    project.final_config(text)
    with pytest.raises(ConfigError) as caught:
        project.load(claim=False)
    return caught.value


def test_shipped_config_is_valid_and_has_the_plan_defaults(repo_root) -> None:
    import yaml

    from launch.final_training_schema import DEFAULTS, validate_settings

    path = repo_root / "configs" / "final_training.yaml"
    settings = validate_settings(yaml.safe_load(path.read_text(encoding="utf-8")), path)
    assert settings["run"]["mode"] == "reuse_if_exists"
    assert settings["source"] == {"type": "hpo_best", "parent": None}
    assert settings["checkpoint"] == {"load": False, "source": None, "validate": True}
    assert settings["identity"] == DEFAULTS["identity"]
    assert settings["output"]["skip_if_complete"] is True
    assert set(settings) == set(DEFAULTS)


@pytest.mark.parametrize("number", [0, -1])
def test_variant_number_below_one(project, number: int) -> None:
    error = _error(project, f"variant:\n  number: {number}\n")
    assert error.field == "variant.number" and error.line == 2
    assert "start at 1" in error.message


@pytest.mark.parametrize("seed", ["abc", "1.5", "true"])
def test_non_integer_seed(project, seed: str) -> None:
    error = _error(project, f"seed:\n  random_seed: {seed}\n")
    assert error.field == "seed.random_seed" and "integer" in error.message


def test_unknown_run_mode_names_the_closest(project) -> None:
    error = _error(project, "run:\n  mode: reuse_if_exist\n")
    assert error.field == "run.mode" and "reuse_if_exists" in error.fix


def test_unknown_source_type(project) -> None:
    error = _error(project, "source:\n  type: hpo\n")
    assert error.field == "source.type" and "hpo_best" in error.fix


def test_continue_from_previous_needs_final_training_source(project) -> None:
    error = _error(project, "run:\n  mode: continue_from_previous\nsource:\n  type: hpo_best\n")
    assert error.field == "run.mode" and "source.type: final_training" in error.fix


def test_scratch_never_loads(project) -> None:
    error = _error(project, "source:\n  type: scratch\ncheckpoint:\n  load: true\n")
    assert error.field == "checkpoint.load"


@pytest.mark.parametrize(
    ("text", "field", "closest", "line"),
    [
        ("trainng:\n  epochs: 2\n", "trainng", "training", 1),
        ("training:\n  learnig_rate: 0.1\n", "training.learnig_rate", "learning_rate", 2),
        (
            "training:\n  early_stopping:\n    patiance: 3\n",
            "training.early_stopping.patiance",
            "patience",
            3,
        ),
        ("training:\n  warmup_step: 10\n", "training.warmup_step", "warmup_steps", 2),
        (
            "checkpoint:\n  source: {spec_fp: a, exec_fp: b, varient: 1}\n",
            "checkpoint.source.varient",
            "variant",
            2,
        ),
    ],
)
def test_unknown_key_anywhere_names_the_closest_valid_key(project, text, field, closest, line) -> None:
    error = _error(project, text)
    assert error.field == field
    assert f"did you mean {closest!r}" in error.fix
    assert error.line == line
    assert error.path.endswith("final_training.yaml")


def test_checkpoint_path_that_does_not_exist(project) -> None:
    error = _error(project, "checkpoint:\n  load: true\n  source: nowhere/best.ckpt\n")
    assert error.field == "checkpoint.source" and "does not exist" in error.message


def test_checkpoint_that_is_not_ours(project, fake_checkpoint) -> None:
    fake_checkpoint(project.root / "other.ckpt", ours=False)
    (project.root / "text.ckpt").write_text("not a zip")
    for name, words in (
        ("other.ckpt", "not a ner-lightning checkpoint"),
        ("text.ckpt", "not a PyTorch checkpoint"),
    ):
        error = _error(project, f"checkpoint:\n  load: true\n  source: {name}\n")
        assert words in error.message


def test_unvalidated_checkpoint_is_accepted(project) -> None:
    project.final_config("checkpoint:\n  load: true\n  source: nowhere/best.ckpt\n  validate: false\n")
    resolved = project.load(claim=False)
    assert resolved.init_checkpoint == str(project.root / "nowhere" / "best.ckpt")
    assert resolved.checkpoint_resolved_by == "explicit"


def test_data_config_outside_configs(project, tmp_path) -> None:
    (tmp_path / "elsewhere.yaml").write_text("name: x\nlocal_path: data/toy\n")
    error = _error(project, "dataset:\n  data_config: ../../elsewhere.yaml\n")
    assert error.field == "dataset.data_config" and "outside" in error.message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("training:\n  learning_rate: -1\n", "training.learning_rate"),
        ("training:\n  learning_rate: fast\n", "training.learning_rate"),
        ("training:\n  dropout: 1.5\n", "training.dropout"),
        ("training:\n  epochs: 0\n", "training.epochs"),
        ("output:\n  skip_if_complete: maybe\n", "output.skip_if_complete"),
        ("checkpoint:\n  source: 5\n", "checkpoint.source"),
        ("checkpoint:\n  source: {spec_fp: abc}\n", "checkpoint.source"),
        ("mlflow:\n  tags: [a, b]\n", "mlflow.tags"),
        ("run: fast\n", "run"),
    ],
)
def test_bad_values(project, text: str, field: str) -> None:
    assert _error(project, text).field.startswith(field)


def test_malformed_yaml_names_the_line(project) -> None:
    error = _error(project, "run:\n  mode: [unclosed\n")
    assert error.line is not None and "YAML syntax error" in error.message
