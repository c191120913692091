"""The plan's compatibility surface (issue 12, acceptance 5) and the bad inputs of final_training.yaml.

Dict-style access and the deprecated function keep working with a DeprecationWarning; the package
exports its public names without importing torch; `warmup_steps` and `load_from_checkpoint` are
accepted; an unknown `training:` key, a foreign starting checkpoint, a parent still running and a
gone checkpoint are handled with the file, line, field and fix.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from launch.errors import LaunchError
from launch.final_training import build_final_training_config, mark_variant_complete, mark_variant_running
from launch.final_training_schema import SCHEMA
from launch.search_space import PARAMETER_ARGUMENTS
from launch.variants import METADATA_FILE
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR
from ner_lightning.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.final_training.conftest import BEST, write_fake_checkpoint
from tests.final_training.test_exclusive_variants import _launch

TOY_LABELS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
TINY_BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}


def write_checkpoint(
    path: Path, *, labels=TOY_LABELS, head="ner_lightning.model.heads.SoftmaxHead", **arch
) -> Path:
    """A zip laid out like torch.save's archive whose pickle holds a real `ner_lightning` record."""
    record = {
        "format_version": 2,
        "label_names": list(labels),
        "backbone": "tests/fixtures/backbones/tiny-bert",
        "backbone_config": {**TINY_BERT, **arch},
        "head": {"class_path": head, "init_args": {}},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "archive/data.pkl", pickle.dumps({"state_dict": {}, "ner_lightning": record}, protocol=2)
        )
        archive.writestr("archive/version", "3\n")
    return path


# --- acceptance 5: the deprecated function and dict-style access -------------------------------
def test_dict_style_access_and_the_deprecated_function_warn_and_keep_working(project) -> None:
    resolved = project.load(claim=False)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert resolved["learning_rate"] == resolved.hyperparameters["learning_rate"] == 3e-4
    with pytest.warns(DeprecationWarning):
        assert resolved["batch_size"] == 4 and resolved["backbone"] == BEST["backbone"]
    assert {"backbone", "learning_rate", "batch_size", "random_seed", "early_stopping"} <= set(resolved)
    best = {**BEST, "dataset": {"name": "toy", "version": "1", "local_path": str(project.dataset)}}
    with pytest.warns(DeprecationWarning, match="build_final_training_config is deprecated"):
        inline = build_final_training_config(best, {"model": {"dropout": 0.3}})
    with pytest.warns(DeprecationWarning):
        assert inline["dropout"] == 0.3 and inline["random_seed"] == 42
        assert inline.get("early_stopping") == {"enabled": False}


def test_public_names_are_exported_without_importing_torch() -> None:
    code = (
        "import sys, launch\n"
        "from launch import *\n"
        "assert callable(load_final_training_config) and callable(build_final_training_config)\n"
        "assert callable(run_pipeline) and ResolvedFinalTraining.__name__ == 'ResolvedFinalTraining'\n"
        "assert not {'torch', 'lightning', 'transformers'} & set(sys.modules), sorted(sys.modules)\n"
        "print(','.join(launch.__all__))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "load_final_training_config" in done.stdout and "run_pipeline" in done.stdout


# --- the plan's keys ---------------------------------------------------------------------------
def test_warmup_steps_is_accepted_and_replaces_the_ratio(project) -> None:
    project.final_config("training:\n  warmup_steps: 5\n")
    resolved = project.load(train={"model": {"warmup_ratio": 0.1}}, claim=False)
    assert resolved.hyperparameters["warmup_steps"] == 5 and "warmup_ratio" not in resolved.hyperparameters
    assert "--model.warmup_steps=5" in resolved.training_arguments()


def test_load_from_checkpoint_is_the_plan_spelling_of_load(project, tmp_path: Path) -> None:
    trial = write_checkpoint(tmp_path / "trial" / "best.ckpt")
    project.final_config("checkpoint:\n  load_from_checkpoint: true\n")
    resolved = project.load(best={**BEST, "checkpoint": str(trial)}, claim=False)
    assert (resolved.init_checkpoint, resolved.checkpoint_resolved_by) == (str(trial), "hpo_best")
    project.final_config("checkpoint:\n  load: false\n  load_from_checkpoint: true\n")
    with pytest.raises(ConfigError) as caught:
        project.load(claim=False)
    assert caught.value.field == "checkpoint.load_from_checkpoint" and caught.value.line == 3


def test_every_training_key_is_a_training_cli_argument() -> None:
    def leaves(section: dict, prefix: str = "") -> list[str]:
        out = []
        for key, rule in section.items():
            out += leaves(rule, f"{prefix}{key}.") if isinstance(rule, dict) else [f"{prefix}{key}"]
        return out

    assert set(leaves(SCHEMA["training"])) <= set(PARAMETER_ARGUMENTS)


# --- bad inputs --------------------------------------------------------------------------------
def test_unknown_training_key_names_file_line_and_the_valid_keys(project) -> None:
    project.final_config("run:\n  mode: force_new\ntraining:\n  hidden_size: 64\n")
    with pytest.raises(ConfigError) as caught:
        project.load(claim=False)
    error = caught.value
    assert (error.field, error.line) == ("training.hidden_size", 4) and error.path.endswith(
        "final_training.yaml"
    )
    assert "learning_rate" in error.fix and "warmup_steps" in error.fix
    project.final_config("training:\n  learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat") as caught:
        project.load(claim=False)
    assert "did you mean 'learning_rate'" in caught.value.fix


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": ["O", "B-X", "I-X"]}, "trained on labels"),
        ({"head": "ner_lightning.model.heads.CRFHead"}, "has a CRF head"),
        ({"hidden_size": 64}, "another backbone architecture"),
    ],
)
def test_a_starting_checkpoint_of_other_labels_head_or_architecture_is_refused(
    project, tmp_path: Path, kwargs: dict, message: str
) -> None:
    foreign = write_checkpoint(tmp_path / "foreign.ckpt", **kwargs)
    project.final_config(f"checkpoint:\n  load: true\n  source: {foreign}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        project.load(claim=False)
    assert caught.value.field == "checkpoint.source" and "source.type: scratch" in caught.value.fix
    compatible = write_checkpoint(tmp_path / "ours.ckpt")
    project.final_config(f"checkpoint:\n  load: true\n  source: {compatible}\n")
    assert project.load(claim=False).init_checkpoint == str(compatible)


def test_continue_from_previous_refuses_a_parent_still_running(project) -> None:
    owner = _launch(project, time.time(), hold_s=60.0)  # claims v1 and keeps running
    try:
        assert json.loads(owner.stdout.readline()) == {"action": "train", "variant": 1}
        project.final_config("run:\n  mode: continue_from_previous\nsource:\n  type: final_training\n")
        with pytest.raises(ConfigError, match="still running") as caught:
            project.load()
        assert "wait for the parent run to complete" in caught.value.fix
    finally:
        owner.kill()
        owner.wait()


def test_a_reused_variant_whose_checkpoint_is_gone_is_trained_again_and_says_why(project) -> None:
    first = project.load()
    mark_variant_running(first)
    checkpoint = write_fake_checkpoint(Path(first.output_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT)
    mark_variant_complete(first)
    metadata = (Path(first.output_dir) / METADATA_FILE).read_bytes()
    assert project.load(claim=False).action == "skip"
    checkpoint.unlink()
    again = project.load()
    assert (again.action, again.variant, again.spec_fp) == ("train", 2, first.spec_fp)
    assert "no longer exists" in again.reason
    assert (Path(first.output_dir) / METADATA_FILE).read_bytes() == metadata  # v1 untouched
    with pytest.raises(LaunchError, match="never rewritten"):
        mark_variant_complete(first)


def test_an_edited_final_training_yaml_does_not_reuse_the_variant_of_the_old_file(project) -> None:
    first = project.load()
    mark_variant_running(first)
    write_fake_checkpoint(Path(first.output_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT)
    mark_variant_complete(first)
    project.final_config("# same settings, another file\n")
    again = project.load(claim=False)
    assert (again.action, again.variant, again.spec_fp) == ("train", 2, first.spec_fp)
    assert "final_training.yaml changed since v1" in again.reason


def test_defaults_come_from_every_training_config_in_order(project) -> None:
    base = {
        "model": {"learning_rate": 1e-3, "dropout": 0.1},
        "data": {"batch_size": 32},
        "trainer": {"max_epochs": 5},
    }
    overlay = {"model": {"dropout": 0.0}, "data": {"batch_size": 8}, "early_stopping": {"enabled": True}}
    from launch.final_training import load_final_training_config

    resolved = load_final_training_config(
        project.root,
        project.config_dir,
        {"backbone": BEST["backbone"]},
        project.experiment,
        [base, overlay],
        claim=False,
    )
    hp = resolved.hyperparameters
    assert (hp["learning_rate"], hp["dropout"], hp["batch_size"], hp["epochs"]) == (1e-3, 0.0, 8, 5)
    assert hp["early_stopping.enabled"] is False and hp["combine_train_validation"] is True  # the final base
