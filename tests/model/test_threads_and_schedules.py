"""Threads as a setting (bounded by the cores the process may use) and the learning-rate schedules."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import pytest
import torch

from ner_lightning.cli import cli_main
from ner_lightning.errors import ModelError
from ner_lightning.model.module import TokenClassifier
from ner_lightning.threads import available_cores, cgroup_cpu_limit, resolve_threads
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.fixtures.tiny_runs import TRAIN_CONFIGS

BERT = str(TINY_BACKBONES["bert"])


def test_cgroup_quota_files_v2_and_v1(tmp_path: Path) -> None:
    v2, quota, period = tmp_path / "cpu.max", tmp_path / "quota", tmp_path / "period"
    v2.write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2, quota, period) == 2  # 1.5 cores of quota -> 2 threads
    v2.write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, quota, period) is None
    quota.write_text("300000\n")
    period.write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path / "absent", quota, period) == 3
    quota.write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path / "absent", quota, period) is None


def test_omp_num_threads_bounds_the_default_and_more_is_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores().count == 1 and available_cores().limited_by == "OMP_NUM_THREADS"
    assert resolve_threads(None)[0] == 1
    with caplog.at_level(logging.WARNING, logger="ner_lightning.threads"):
        assert resolve_threads(64)[0] == 1
    assert (
        "--threads 64 is more than the 1 core(s) this process may use (limited by OMP_NUM_THREADS)"
        in caplog.text
    )


def test_cli_threads_setting_is_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    args = ["--config", str(TRAIN_CONFIGS / "base.yaml"), "--config", str(TRAIN_CONFIGS / "cpu.yaml")]
    args += [
        "--config",
        str(TRAIN_CONFIGS / "tiny.yaml"),
        "--trainer.logger",
        "false",
        "--output_dir",
        str(tmp_path),
    ]
    try:
        cli = cli_main([*args, "--threads", "1"], run=False)
        assert cli.threads == 1 and torch.get_num_threads() == 1
        cli = cli_main(args, run=False)  # cpu.yaml: threads null -> the cores this process may use
        assert cli.threads == available_cores().count == torch.get_num_threads()
    finally:
        torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("linear", [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]),
        ("cosine", [0.0, 0.5, 1.0, 0.962, 0.854, 0.691, 0.5, 0.309, 0.146, 0.038]),
        ("constant", [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_schedules_after_a_warmup_of_steps(schedule: str, expected: list[float]) -> None:
    model = TokenClassifier(
        BERT, ["O", "B-X", "I-X"], lr_schedule=schedule, warmup_steps=2, learning_rate=1.0
    )
    model.trainer = L.Trainer(max_steps=10, logger=False, enable_progress_bar=False)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(10):
        seen.append(round(scheduler.get_last_lr()[0], 3))
        optimizer.step()
        scheduler.step()
    assert seen == expected


def test_warmup_ratio_applies_without_warmup_steps_and_bad_values_are_named() -> None:
    model = TokenClassifier(BERT, ["O", "B-X", "I-X"], warmup_ratio=0.5, learning_rate=1.0)
    model.trainer = L.Trainer(max_steps=4, logger=False, enable_progress_bar=False)
    scheduler = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert scheduler.get_last_lr()[0] == 0.0 and scheduler.lr_lambdas[0](2) == 1.0
    with pytest.raises(ModelError, match="unknown schedule 'step'"):
        TokenClassifier(BERT, ["O", "B-X", "I-X"], lr_schedule="step")
    with pytest.raises(ModelError, match="must be >= 0"):
        TokenClassifier(BERT, ["O", "B-X", "I-X"], warmup_steps=-1)


@pytest.mark.parametrize(("head", "groups"), [("softmax", [0.01, 0.0]), ("crf", [0.01, 0.0, 0.0])])
def test_parameter_groups_keep_the_layout_of_format_1_checkpoints(head: str, groups: list[float]) -> None:
    """Backbone and head share the decay / no-decay groups (the CRF adds its own), as before heads were
    parts, so `--ckpt_path` resumes the optimizer state of an older checkpoint."""
    model = TokenClassifier(BERT, ["O", "B-X", "I-X"], head=head)
    model.trainer = L.Trainer(max_steps=4, logger=False, enable_progress_bar=False)
    optimizer = model.configure_optimizers()["optimizer"]
    assert [g["weight_decay"] for g in optimizer.param_groups] == groups
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    if head == "crf":
        assert optimizer.param_groups[2]["lr"] == 5e-3 and len(optimizer.param_groups[2]["params"]) == 3


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_adamw_is_fused_on_cpu(precision: str) -> None:
    """The fused AdamW kernel (one pass over all parameters) is the default on CPU (no fp16 loss
    scaling there: Lightning runs `16-mixed` as bf16 on CPU)."""
    model = TokenClassifier(BERT, ["O", "B-X", "I-X"])
    model.trainer = L.Trainer(
        max_steps=4, logger=False, enable_progress_bar=False, accelerator="cpu", precision=precision
    )
    optimizer = model.configure_optimizers()["optimizer"]
    assert all(group["fused"] is True for group in optimizer.param_groups)
