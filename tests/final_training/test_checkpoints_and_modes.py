"""Checkpoint resolution (explicit, by fingerprints, auto: index -> metadata -> cache -> none) and run modes."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from launch.checkpoint_resolution import resolve_checkpoint_from_fingerprints
from launch.final_training import (
    build_final_training_config,
    load_final_training_config,
    mark_variant_complete,
    mark_variant_failed,
    mark_variant_running,
)
from launch.variants import CACHE_FILE, INDEX_FILE, METADATA_FILE, VariantStore
from ner_lightning.contract import CHECKPOINT_DIR, LAST_CHECKPOINT
from ner_lightning.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.final_training.conftest import BEST, write_fake_checkpoint


def _finish(resolved, name: str = "best.ckpt") -> Path:
    """Simulate a finished job: a checkpoint in the variant folder, status complete."""
    mark_variant_running(resolved, run_id=f"run-{resolved.variant}")
    checkpoint = write_fake_checkpoint(Path(resolved.output_dir) / CHECKPOINT_DIR / name)
    mark_variant_complete(resolved, metrics={"val_f1": 0.5})
    return checkpoint


def test_first_run_allocates_v1_and_lays_out_folders(project) -> None:
    resolved = project.load()
    assert resolved.action == "train" and resolved.variant == 1
    expected = (
        project.root
        / "outputs/final_training/local/tiny-bert"
        / f"spec_{resolved.spec_fp}_exec_{resolved.exec_fp}"
        / "v1"
    )
    assert Path(resolved.output_dir) == expected
    assert json.loads((expected / METADATA_FILE).read_text())["status"] == "allocated"
    assert resolved.init_checkpoint is None  # hpo_best with the plan's `load: false`


def test_preview_writes_nothing(project) -> None:
    resolved = project.load(claim=False)
    assert resolved.variant == 1 and not (project.root / "outputs").exists()


def test_reuse_if_exists_skips_a_complete_variant(project) -> None:
    first = project.load()
    checkpoint = _finish(first)
    again = project.load()
    assert (again.action, again.variant, again.checkpoint) == ("skip", 1, str(checkpoint))
    project.final_config("output:\n  skip_if_complete: false\n")
    assert project.load().variant == 2


def test_force_new_ignores_the_explicit_number(project) -> None:
    _finish(project.load())
    project.final_config("run:\n  mode: force_new\nvariant:\n  number: 1\n")
    second = project.load()
    assert (second.action, second.variant) == ("train", 2)


def test_explicit_variant_number(project) -> None:
    project.final_config("variant:\n  number: 5\n")
    fifth = project.load()
    assert fifth.variant == 5
    _finish(fifth)
    assert project.load().action == "skip"  # reuse_if_exists: v5 is complete
    project.final_config("run:\n  mode: resume_if_incomplete\nvariant:\n  number: 6\n")
    assert project.load().variant == 6


def test_resume_if_incomplete(project) -> None:
    first = project.load()
    mark_variant_running(first)
    project.final_config("run:\n  mode: resume_if_incomplete\n")
    # no last.ckpt yet: same variant, trained from the start
    again = project.load()
    assert (again.action, again.variant, again.resume_checkpoint) == ("train", 1, None)
    last = write_fake_checkpoint(Path(first.output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT)
    mark_variant_failed(first, error="killed")
    resumed = project.load()
    assert (resumed.action, resumed.variant, resumed.resume_checkpoint) == ("resume", 1, str(last))
    assert f"--ckpt_path={last}" in resumed.training_arguments()
    _finish(resumed)
    assert project.load().variant == 2  # nothing incomplete: a new variant (the plan)


def _parent_and_store(project):
    parent = project.load()
    checkpoint = _finish(parent)
    return parent, checkpoint, VariantStore(project.root / "outputs/final_training/local")


def test_continue_from_previous_auto_detects_the_parent(project) -> None:
    parent, checkpoint, _ = _parent_and_store(project)
    project.final_config(
        "run:\n  mode: continue_from_previous\nsource:\n  type: final_training\ntraining:\n  learning_rate: 1.0e-5\n"
    )
    child = project.load()
    assert child.action == "train" and child.init_checkpoint == str(checkpoint)
    assert child.checkpoint_resolved_by == "index"
    assert dict(child.parent) == {"spec_fp": parent.spec_fp, "exec_fp": parent.exec_fp, "variant": 1}
    assert child.spec_fp != parent.spec_fp  # new learning rate and a starting checkpoint
    assert child.hyperparameters["learning_rate"] == 1e-5


def test_continue_without_any_previous_run(project) -> None:
    project.final_config("run:\n  mode: continue_from_previous\nsource:\n  type: final_training\n")
    with pytest.raises(ConfigError, match="no complete previous final run") as caught:
        project.load()
    assert caught.value.field == "source.parent"


def test_auto_resolution_priority_index_metadata_cache_none(project) -> None:
    parent, checkpoint, store = _parent_and_store(project)
    spec, exc = parent.spec_fp, parent.exec_fp
    # 1. index wins even when it disagrees with the folders
    index_path = store.root / INDEX_FILE
    index = json.loads(index_path.read_text())
    index["variants"][f"{spec}_{exc}"]["1"]["checkpoint"] = "from-index.ckpt"
    index_path.write_text(json.dumps(index))
    assert resolve_checkpoint_from_fingerprints(store, spec, exc)[:2] == ("from-index.ckpt", "index")
    # 2. no complete entry in the index -> metadata.json files
    index["variants"] = {}
    index_path.write_text(json.dumps(index))
    assert resolve_checkpoint_from_fingerprints(store, spec, exc)[:2] == (str(checkpoint), "metadata")
    # 3. variant folders gone (outputs on another machine) -> cache
    cache = json.loads((store.root / CACHE_FILE).read_text())
    import shutil

    shutil.rmtree(store.root / "tiny-bert")
    index_path.write_text(json.dumps(index))
    assert resolve_checkpoint_from_fingerprints(store, spec, exc)[:2] == (
        cache[f"{spec}_{exc}"]["checkpoint"],
        "cache",
    )
    # 4. nothing anywhere -> none
    (store.root / CACHE_FILE).unlink()
    assert resolve_checkpoint_from_fingerprints(store, spec, exc) == (None, None, None)


def test_checkpoint_by_fingerprints_and_by_folder(project) -> None:
    parent, checkpoint, _ = _parent_and_store(project)
    ref = f"{{spec_fp: {parent.spec_fp}, exec_fp: {parent.exec_fp}, variant: 1}}"
    project.final_config(f"run:\n  mode: force_new\nsource:\n  type: final_training\n  parent: {ref}\n")
    child = project.load(claim=False)
    assert (child.init_checkpoint, child.checkpoint_resolved_by) == (str(checkpoint), "fingerprints")
    project.final_config(
        f"run:\n  mode: force_new\nsource:\n  type: final_training\n  parent: {parent.output_dir}\n"
    )
    child = project.load(claim=False)
    assert child.init_checkpoint == str(checkpoint) and child.parent["variant"] == 1
    project.final_config(
        f"source:\n  type: final_training\ncheckpoint:\n  source: {{spec_fp: {parent.spec_fp}, exec_fp: {parent.exec_fp}, variant: 9}}\n"
    )
    with pytest.raises(ConfigError, match="v9 does not exist") as caught:
        project.load(claim=False)
    assert caught.value.field == "checkpoint.source"


def test_hpo_best_checkpoint_when_loading(project, fake_checkpoint) -> None:
    trial = fake_checkpoint(project.root / "sweep" / "best.ckpt")
    project.final_config("checkpoint:\n  load: true\n")
    resolved = project.load(best={**BEST, "checkpoint": str(trial)}, claim=False)
    assert (resolved.init_checkpoint, resolved.checkpoint_resolved_by) == (str(trial), "hpo_best")
    assert project.load(claim=False).init_checkpoint is None  # selection recorded none


def test_deprecated_inline_path_warns_and_returns_the_same_shape(project) -> None:
    best = {**BEST, "dataset": {"name": "toy", "version": "1", "local_path": str(project.dataset)}}
    with pytest.warns(DeprecationWarning, match="build_final_training_config is deprecated"):
        inline = build_final_training_config(best, {"seed_everything": 3})
    assert type(inline) is type(project.load(claim=False))
    assert inline.deprecated and inline.seed == 3 and inline.variant == 1 and inline.action == "train"
    assert inline.dataset.labels[0] == "O"
    with pytest.warns(DeprecationWarning):
        assert build_final_training_config(BEST, {}, random_seed=9).seed == 9


def test_loader_falls_back_with_a_warning_when_the_yaml_is_absent(project) -> None:
    (project.config_dir / "final_training.yaml").unlink()
    with pytest.warns(DeprecationWarning, match="does not exist; falling back"):
        resolved = project.load(claim=False)
    assert resolved.deprecated and resolved.run_mode == "reuse_if_exists" and resolved.config_path is None
    project.final_config("run:\n  mode: force_new\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert not project.load(claim=False).deprecated


def test_launch_final_training_never_imports_torch() -> None:
    code = "import sys, launch.final_training, launch.final_training_schema, launch.checkpoint_resolution, launch.variants, launch.fingerprints; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'transformers', 'pytorch_lightning')))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_load_final_training_config_signature_matches_the_pipeline_contract() -> None:
    import inspect

    parameters = list(inspect.signature(load_final_training_config).parameters)
    assert parameters[:5] == ["root_dir", "config_dir", "best_config", "experiment_config", "train_config"]
    assert "backend" in parameters


def test_continue_finds_a_parent_that_was_trained_with_overrides(project) -> None:
    project.final_config("training:\n  epochs: 7\n")
    parent = project.load()
    checkpoint = _finish(parent)
    project.final_config("run:\n  mode: continue_from_previous\nsource:\n  type: final_training\n")
    child = project.load(claim=False)
    # spec_fp of "no overrides" matches nothing; the same backbone + dataset + exec_fp does
    assert (child.init_checkpoint, child.checkpoint_resolved_by) == (str(checkpoint), "metadata")
    assert child.parent["spec_fp"] == parent.spec_fp
