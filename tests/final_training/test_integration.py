"""Acceptance 2: real config file, real `python -m ner_lightning fit` runs, real metadata and index files.

First run trains v1; a rerun with reuse_if_exists skips; force_new trains v2; an interrupted v3
(stopped after one epoch: last.ckpt written, status still running) is resumed by
resume_if_incomplete to completion. Then continue_from_previous resolves v3's real checkpoint,
and the continued run (`--model.init_checkpoint`) really starts from v3's weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from launch.checkpoint_resolution import validate_checkpoint
from launch.final_training import (
    ResolvedFinalTraining,
    mark_variant_complete,
    mark_variant_running,
)
from launch.variants import INDEX_FILE, METADATA_FILE
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT
from tests.conftest import REPO_ROOT

TRAIN_CONFIGS = [
    REPO_ROOT / "configs" / "train" / "base.yaml",
    REPO_ROOT / "configs" / "train" / "tiny.yaml",
]
FINAL_YAML = """\
run:
  mode: {mode}
training:
  epochs: 2
"""


def _deep_merge(base: dict, overlay: dict) -> dict:
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = (
            _deep_merge(merged[key], value)
            if isinstance(value, dict) and isinstance(merged.get(key), dict)
            else value
        )
    return merged


def _fit(resolved: ResolvedFinalTraining, tmp_path: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "ner_lightning", "fit"]
    for config in TRAIN_CONFIGS:
        command += ["--config", str(config)]
    command += [
        f"--data.data_dir={resolved.dataset.local_path}",
        f"--output_dir={resolved.output_dir}",
        *resolved.training_arguments(),
        "--trainer.check_val_every_n_epoch=1",
        *extra,
    ]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NER_GIT_COMMIT": "test",
    }
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_train_skip_force_new_and_resume_an_interrupted_variant(project, tmp_path: Path) -> None:
    train = {}
    for path in TRAIN_CONFIGS:
        train = _deep_merge(train, yaml.safe_load(path.read_text(encoding="utf-8")))
    best = {
        "backbone": "tests/fixtures/backbones/tiny-bert",
        "params": {"learning_rate": 0.003, "batch_size": 8},
    }

    # 1. first run trains v1
    project.final_config(FINAL_YAML.format(mode="reuse_if_exists"))
    first = project.load(best=best, train=train)
    assert (first.action, first.variant) == ("train", 1)
    mark_variant_running(first, run_id="run-1")
    _fit(first, tmp_path)
    v1 = mark_variant_complete(first, metrics={"val_f1": 1.0})
    assert v1.checkpoint and Path(v1.checkpoint).is_file()
    validate_checkpoint(v1.checkpoint)  # a real checkpoint is recognised without torch

    # 2. rerun with reuse_if_exists skips
    again = project.load(best=best, train=train)
    assert (again.action, again.variant, again.checkpoint) == ("skip", 1, v1.checkpoint)

    # 3. force_new trains v2
    project.final_config(FINAL_YAML.format(mode="force_new"))
    second = project.load(best=best, train=train)
    assert (second.action, second.variant, second.spec_fp) == ("train", 2, first.spec_fp)
    mark_variant_running(second)
    _fit(second, tmp_path)
    mark_variant_complete(second)

    # 4. v3 is interrupted after one epoch: last.ckpt exists, status stays "running"
    third = project.load(best=best, train=train)
    assert third.variant == 3
    mark_variant_running(third)
    _fit(third, tmp_path, "--trainer.max_epochs=1")
    assert (Path(third.output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file()

    # 5. resume_if_incomplete resumes v3 from its last.ckpt to completion
    project.final_config(FINAL_YAML.format(mode="resume_if_incomplete"))
    resumed = project.load(best=best, train=train)
    assert (resumed.action, resumed.variant) == ("resume", 3)
    assert resumed.resume_checkpoint == str(Path(third.output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT)
    _fit(resumed, tmp_path)
    mark_variant_complete(resumed, metrics={"val_f1": 1.0})

    metadata = json.loads((Path(third.output_dir) / METADATA_FILE).read_text(encoding="utf-8"))
    assert metadata["status"] == "complete" and Path(metadata["checkpoint"]).is_file()
    index = json.loads((Path(first.output_dir).parents[2] / INDEX_FILE).read_text(encoding="utf-8"))
    entries = index["variants"][f"{first.spec_fp}_{first.exec_fp}"]
    assert {n: e["status"] for n, e in entries.items()} == {"1": "complete", "2": "complete", "3": "complete"}

    # 6. continue_from_previous finds the latest complete run (v3) and validates its real checkpoint
    project.final_config(
        "run:\n  mode: continue_from_previous\nsource:\n  type: final_training\ntraining:\n  learning_rate: 1.0e-4\n  epochs: 2\n"
    )
    child = project.load(best=best, train=train, claim=False)
    # the parents were trained with `epochs: 2` overrides: found by backbone + dataset + exec_fp
    assert child.parent["variant"] == 3 and child.checkpoint_resolved_by == "metadata"
    assert child.init_checkpoint == metadata["checkpoint"]

    # 7. the continued run really starts from the parent's weights: with a zero learning rate, the
    #    child's best checkpoint after one epoch holds exactly the parent's weights
    assert f"--model.init_checkpoint={child.init_checkpoint}" in child.training_arguments()
    child_out = tmp_path / "child"
    _fit(
        child, tmp_path, "--model.learning_rate=1e-30", "--trainer.max_epochs=1", f"--output_dir={child_out}"
    )
    parent_state = torch.load(child.init_checkpoint, weights_only=True)["state_dict"]
    child_ckpt = torch.load(child_out / CHECKPOINT_DIR / BEST_CHECKPOINT, weights_only=True)
    # One epoch over train + validation (final training merges them, whatever the training configs
    # say) from step 0, not the parent's count: 5 batches of 8 windows (train alone: 4).
    assert child_ckpt["global_step"] == 5
    assert child_ckpt["state_dict"].keys() == parent_state.keys()
    assert all(torch.equal(child_ckpt["state_dict"][k], v) for k, v in parent_state.items())
