"""`training_arguments()` hands the resolved starting checkpoint to the training CLI.

A new variant initialised from a checkpoint gets `--model.init_checkpoint=<file>` (weights only);
a resumed variant gets `--ckpt_path=<last.ckpt>` and no init checkpoint (the resumed state wins).
"""

from __future__ import annotations

from pathlib import Path

from launch.final_training import mark_variant_complete, mark_variant_failed, mark_variant_running
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR, LAST_CHECKPOINT
from tests.final_training.conftest import BEST, write_fake_checkpoint

CONTINUE = "run:\n  mode: {mode}\nsource:\n  type: final_training\ntraining:\n  learning_rate: 1.0e-5\n"


def _init_arguments(arguments: tuple[str, ...]) -> list[str]:
    return [a for a in arguments if a.startswith(("--model.init_checkpoint", "--ckpt_path"))]


def test_continue_from_previous_passes_the_parent_best_checkpoint(project) -> None:
    parent = project.load()
    assert _init_arguments(parent.training_arguments()) == []  # scratch: pretrained backbone only
    mark_variant_running(parent)
    best = write_fake_checkpoint(Path(parent.output_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT)
    mark_variant_complete(parent)

    project.final_config(CONTINUE.format(mode="continue_from_previous"))
    child = project.load()
    assert child.init_checkpoint == str(best)
    arguments = child.training_arguments()
    assert _init_arguments(arguments) == [f"--model.init_checkpoint={best}"]
    assert "--model.learning_rate=1e-05" in arguments


def test_hpo_best_checkpoint_is_passed_only_when_loading(project, fake_checkpoint) -> None:
    trial = fake_checkpoint(project.root / "sweep" / "best.ckpt")
    best = {**BEST, "checkpoint": str(trial)}
    project.final_config("checkpoint:\n  load: true\n")
    loaded = project.load(best=best, claim=False)
    assert _init_arguments(loaded.training_arguments()) == [f"--model.init_checkpoint={trial}"]
    project.final_config("checkpoint:\n  load: false\n")
    assert _init_arguments(project.load(best=best, claim=False).training_arguments()) == []


def test_a_resumed_continued_variant_resumes_instead_of_reinitialising(project) -> None:
    parent = project.load()
    mark_variant_running(parent)
    write_fake_checkpoint(Path(parent.output_dir) / CHECKPOINT_DIR / BEST_CHECKPOINT)
    mark_variant_complete(parent)
    project.final_config(CONTINUE.format(mode="continue_from_previous"))
    child = project.load()
    mark_variant_running(child)
    last = write_fake_checkpoint(Path(child.output_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT)
    mark_variant_failed(child, error="preempted")

    project.final_config(CONTINUE.format(mode="resume_if_incomplete"))
    resumed = project.load()
    assert (resumed.action, resumed.variant, resumed.init_checkpoint) == (
        "resume",
        child.variant,
        child.init_checkpoint,
    )
    assert _init_arguments(resumed.training_arguments()) == [f"--ckpt_path={last}"]
