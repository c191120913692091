"""A conversion killed mid-write (SIGKILL: no cleanup code runs) leaves no partial model folder.

The output is built in a hidden sibling folder and renamed into place only after the smoke test, so
the target path holds either nothing or the previous complete model, never a half-written one.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from ner_lightning.contract import ONNX_MODEL_FILE
from ner_lightning.onnx.convert import main as convert_main
from tests.conftest import REPO_ROOT
from tests.onnx.conftest import TOY_DATASET


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _kill_once_staged(source: Path, target: Path) -> None:
    """Start `ner-convert` into `target` and SIGKILL it once its staging folder holds the int8 model."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ner_lightning.onnx.convert",
            "--input",
            str(source),
            "--output",
            str(target),
            "--data",
            str(TOY_DATASET),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            staged = [
                p for p in target.parent.glob(f".{target.name}.tmp-*") if (p / ONNX_MODEL_FILE).is_file()
            ]
            if staged or process.poll() is not None:
                break
            time.sleep(0.005)
        assert staged, "the conversion finished or failed before its staging folder held the model"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


def test_killed_first_conversion_leaves_no_target(bert_crf_output: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    _kill_once_staged(bert_crf_output, target)
    assert not target.exists()


def test_killed_reconversion_keeps_the_previous_model_intact(bert_crf_output: Path, tmp_path: Path) -> None:
    target = tmp_path / "model"
    assert (
        convert_main(["--input", str(bert_crf_output), "--output", str(target), "--data", str(TOY_DATASET)])
        == 0
    )
    before = _digest(target)
    _kill_once_staged(bert_crf_output, target)
    assert _digest(target) == before
