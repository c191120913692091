"""The serving install: `pip install ner-lightning` (base set only) into an empty virtual environment runs
`ner-predict` on a converted int8 model folder, and torch is not there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ner_lightning.onnx.convert import main as convert_main
from ner_lightning.onnx.predictor import OnnxTagger
from tests.conftest import REPO_ROOT
from tests.onnx.conftest import TOY_DATASET, train_tiny

TEXTS = ["Angela Merkel met Satya Nadella in Berlin .", "Nokia moved to Tokyo ."]


def _source_copy(target: Path) -> Path:
    """What a source distribution holds: pyproject, README and the packages (no tests, no .venv)."""
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, target / name)
    for package in ("ner_lightning", "launch"):
        shutil.copytree(REPO_ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _run(command: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH: the fresh environment must find everything in its own site-packages.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_serving_install_runs_ner_predict_without_torch(tmp_path: Path) -> None:
    model = tmp_path / "model"
    trained = train_tiny(tmp_path / "trained", "bert", use_crf=True)
    assert convert_main(["--input", str(trained), "--output", str(model), "--data", str(TOY_DATASET)]) == 0
    expected = [tagged.to_json() for tagged in OnnxTagger(model).predict(TEXTS)]

    venv = tmp_path / "venv"
    created = _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    # The base set only, at the locked versions; pip may use the local wheel cache or the registry.
    installed = _run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", str(REPO_ROOT / "requirements" / "lock.txt"),
         str(_source_copy(tmp_path / "source"))],
        cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]

    for heavy in ("torch", "transformers", "lightning", "azure.ai.ml"):
        probe = _run([str(python), "-c", f"import {heavy}"], cwd=tmp_path)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, heavy

    predicted = _run(
        [
            str(venv / "bin" / "ner-predict"),
            "--model",
            str(model),
            *(a for t in TEXTS for a in ("--text", t)),
        ],
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr
    lines = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert [line["text"] for line in lines] == TEXTS
    assert [{key: line[key] for key in expected[0]} for line in lines] == expected, (
        "the serving install tags exactly as the full install does"
    )
    assert any(line["entities"] for line in lines), "the trained tiny model finds some entity"
    # The commands that need more than the serving set say which extra, without a traceback.
    for command, extra in (("ner-train", "train"), ("ner-convert", "train"), ("ner-provision", "azure")):
        refused = _run([str(venv / "bin" / command), "--help"], cwd=tmp_path)
        assert refused.returncode == 2, (command, refused.stderr)
        assert f"needs the `{extra}` extra" in refused.stderr and "Traceback" not in refused.stderr
    assert _run([str(venv / "bin" / "ner-data"), "--help"], cwd=tmp_path).returncode == 0
    # The program really ran from the fresh environment, not from this checkout.
    where = _run([str(python), "-c", "import ner_lightning; print(ner_lightning.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv)
