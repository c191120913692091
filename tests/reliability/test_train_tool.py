"""`ner-train` / `python -m ner_lightning` against bad settings (issue 14, defects 8, 11, 12).

Each case runs the training entry point (`ner_lightning.cli.main`, what the console script and
`python -m ner_lightning` call) on the tiny config and checks: exit status 2, one message naming
the field or file and the fix, no traceback, and no torch advice to load with `weights_only=False`.
"""

from __future__ import annotations

import json
import os
import pickle
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from ner_lightning.cli import main
from ner_lightning.errors import ConfigError, ModelError
from ner_lightning.model.module import TokenClassifier
from tests.conftest import REPO_ROOT
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.fixtures.tiny_runs import TOY_DATASET, tiny_fit_args

#: One short epoch: the failing cases stop long before, the good run takes seconds.
QUICK = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1",
         "--trainer.check_val_every_n_epoch", "1")  # fmt: skip
UNSAFE_ADVICE = ("weights_only` set to `False`", "weights_only=False")


def run_main(args: list[str]) -> int:
    """Call `main()` as the console script does: the arguments in `sys.argv`."""
    with mock.patch.object(sys, "argv", ["ner-train", *args]):
        return main()


def train(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    """Run `ner-train fit` on the tiny config; returns (exit status, stderr)."""
    status = run_main(tiny_fit_args(tmp_path / "run", *QUICK, *extra))
    return status, capsys.readouterr().err


def assert_clear(status: int, err: str, *fragments: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err and "unexpected error" not in err, err
    assert "ner-train: error:" in err and "Fix:" in err, err
    for fragment in fragments:
        assert fragment in err, err
    for advice in UNSAFE_ADVICE:
        assert advice not in err, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real `last.ckpt` of a one-batch tiny run (made through the same entry point)."""
    output = tmp_path_factory.mktemp("good")
    assert run_main(tiny_fit_args(output, *QUICK)) in (0, None)  # None: before main() returned its status
    return output / "checkpoints" / "last.ckpt"


# --- defects 11 and 12: hyperparameters and dataset labels -----------------------------------------
@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (("--model.dropout", "1.5"), ("[model.dropout]", "[0, 1)")),
        (("--model.learning_rate", "-1"), ("[model.learning_rate]", "greater than 0")),
        (("--model.learning_rate", "0"), ("[model.learning_rate]", "greater than 0")),
        (("--model.crf_learning_rate", "-0.5"), ("[model.crf_learning_rate]", "greater than 0")),
        (("--data.batch_size", "0"), ("[data.batch_size]",)),
        (("--data.max_length", "2"), ("max_length 2", "raise data.max_length")),
    ],
    ids=["dropout 1.5", "lr -1", "lr 0", "crf lr -0.5", "batch size 0", "max_length 2"],
)
def test_out_of_range_settings_print_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    assert_clear(*train(tmp_path, capsys, *extra), *fragments)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda labels: [*labels, "O"], "'O' is listed twice"),
        (lambda labels: labels[1:], 'first label must be "O"'),
    ],
    ids=["duplicate O", "missing O"],
)
def test_bad_dataset_label_lists_print_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, fragment: str
) -> None:
    data = tmp_path / "data"
    shutil.copytree(TOY_DATASET, data)
    labels = json.loads((data / "labels.json").read_text(encoding="utf-8"))
    (data / "labels.json").write_text(json.dumps(edit(labels)), encoding="utf-8")
    assert_clear(*train(tmp_path, capsys, "--data.data_dir", str(data)), "labels.json", fragment)


def test_the_model_itself_refuses_bad_label_lists_and_rates() -> None:
    from ner_lightning.validation import check_model_arguments

    backbone = str(TINY_BACKBONES["bert"])
    with pytest.raises(ModelError, match="listed twice"):
        TokenClassifier(backbone, ["O", "B-PER", "I-PER", "O"])
    with pytest.raises(ModelError, match='first label must be "O"'):
        TokenClassifier(backbone, ["B-PER", "I-PER"])
    with pytest.raises(ConfigError, match="learning rate"):
        TokenClassifier(backbone, ["O", "B-PER", "I-PER"], learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="weight decay"):
        check_model_arguments(["O"], dropout=0.1, learning_rate=1e-3, crf_learning_rate=1e-2, weight_decay=-1)
    check_model_arguments(["O", "B-PER", "I-PER"], 0.0, 1e-5, 1e-3, 0.0)  # the edges that are fine


# --- defect 11: malformed training YAML names the file ---------------------------------------------
def test_malformed_yaml_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text("model:\n  dropout: [0.1\n  learning_rate: 0.01\n", encoding="utf-8")
    status, err = train(tmp_path, capsys, "--config", str(bad))
    assert_clear(status, err, f"{bad}:3", "malformed YAML")
    assert "<unicode string>" not in err and "usage:" not in err


def test_duplicate_yaml_keys_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("model:\n  dropout: 0.1\n  dropout: 0.3\n", encoding="utf-8")
    assert_clear(*train(tmp_path, capsys, "--config", str(twice)), f"{twice}:3", "'dropout' twice")


def test_every_shipped_training_config_passes_the_strict_yaml_check() -> None:
    from ner_lightning.config_files import load_yaml_file

    for path in sorted((REPO_ROOT / "configs" / "train").glob("*.yaml")):
        assert isinstance(load_yaml_file(path), dict), path


# --- defect 8: bad --ckpt_path ----------------------------------------------------------------------
class _Payload:
    def __reduce__(self):  # what a tampered checkpoint would run on an unsafe load
        return (os.system, ("echo pwned",))


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    empty = folder / "empty.ckpt"
    empty.write_bytes(b"")
    unsafe = folder / "unsafe.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload()}, unsafe)
    plain = folder / "plain.ckpt"
    plain.write_bytes(pickle.dumps({"payload": _Payload()}))
    foreign = folder / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    return {
        "truncated": (truncated, "truncated or corrupt"),
        "empty": (empty, "is empty"),
        "missing": (folder / "missing.ckpt", "does not exist"),
        "folder": (folder, "found a folder"),
        "unsafe pickle": (unsafe, "safe (weights-only) loading refuses"),
        "plain pickle": (plain, "not a PyTorch checkpoint archive"),
        "not ours": (foreign, "not a ner-lightning checkpoint"),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "empty", "missing", "folder", "unsafe pickle", "plain pickle", "not ours"]
)
def test_bad_ckpt_path_is_a_clear_message_without_unsafe_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path, case: str
) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    path, fragment = _bad_checkpoints(folder, checkpoint)[case]
    status, err = train(tmp_path, capsys, "--ckpt_path", str(path))
    assert_clear(status, err, "[ckpt_path]", fragment)
    assert "pwned" not in capsys.readouterr().out


def test_a_good_checkpoint_still_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], checkpoint: Path
) -> None:
    status = run_main(tiny_fit_args(tmp_path / "resumed", *QUICK[2:], "--trainer.max_epochs", "2",
                                "--ckpt_path", str(checkpoint)))  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


# --- the console entry point itself ------------------------------------------------------------------
def test_python_m_ner_lightning_passes_the_exit_status_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m ner_lightning` used to drop main()'s status: exit 0 after a failed run."""
    args = tiny_fit_args(tmp_path / "run", *QUICK, "--model.dropout", "1.5")
    monkeypatch.setattr(sys, "argv", ["ner_lightning", *args])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("ner_lightning", run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 2
    assert_clear(2, capsys.readouterr().err, "[model.dropout]")


@pytest.mark.slow  # two cold starts of torch + lightning in subprocesses (~25 s each on 2 busy cores)
def test_python_m_ner_lightning_exits_2_without_a_traceback_and_debug_shows_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("NER_DEBUG", None)
    args = [
        sys.executable,
        "-m",
        "ner_lightning",
        *tiny_fit_args(tmp_path / "run", *QUICK, "--model.dropout", "1.5"),
    ]
    quiet = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 2, quiet.stderr  # was 1 after a 50-line traceback
    assert "Traceback" not in quiet.stderr and "[model.dropout]" in quiet.stderr
    loud = subprocess.run(
        [*args, "--debug"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert loud.returncode == 2 and "Traceback" in loud.stderr and "[model.dropout]" in loud.stderr
