"""`ner-predict` against a damaged model folder and careless options (issue 14, defects 11, 12, 13).

A real model folder (a tiny BERT trained for two steps, exported to ONNX) is copied and damaged
per case; `ner-predict` (its `main`, and once as a subprocess) must exit 2 with the file, field
and fix, print no traceback, and leave the user's files as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ner_lightning.contract import MODEL_METADATA_FILE, ONNX_DIR
from ner_lightning.onnx.predict_cli import main
from tests.conftest import REPO_ROOT
from tests.onnx.conftest import train_tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("predict"), "bert", use_crf=False, max_steps=2) / ONNX_DIR


@pytest.fixture
def damaged(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the model folder, free to damage."""
    return Path(shutil.copytree(model_dir, tmp_path / "model"))


def predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_clear(status: int, err: str, *fragments: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err and "unexpected error" not in err, err
    assert err.startswith("ner-predict: error:") and "Fix:" in err, err
    for fragment in fragments:
        assert fragment in err, err


def _set_metadata(folder: Path, **values: object) -> None:
    path = folder / MODEL_METADATA_FILE
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata.update(values)
    path.write_text(json.dumps(metadata), encoding="utf-8")


# --- defect 11: damaged model folders -----------------------------------------------------------------
def test_corrupt_tokenizer_json_is_a_clear_message(damaged: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokenizer = damaged / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[:100])
    status, _, err = predict(capsys, "--model", str(damaged), "--text", "EU rejects German call")
    assert_clear(status, err, "tokenizer.json", "cannot be loaded")


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        ({"max_length": 2}, ("[max_length]", "no room for words")),
        ({"max_length": -5}, ("[max_length]", "no room for words")),
        ({"max_length": "12"}, ("[max_length]", "must be an integer")),
        ({"max_length": None}, ("[max_length]", "must be an integer")),
        ({"max_length": 100_000}, ("[max_length]", "exceeds the model's limit")),
        ({"stride": 50}, ("[stride]", "smaller than max_length")),
        ({"stride": -1}, ("[stride]", ">= 0")),
    ],
    ids=[
        "max_length 2",
        "max_length -5",
        "max_length string",
        "max_length null",
        "max_length 1e5",
        "stride 50",
        "stride -1",
    ],
)
def test_tampered_window_settings_are_a_clear_message(
    damaged: Path, capsys: pytest.CaptureFixture[str], values: dict, fragments: tuple[str, ...]
) -> None:
    _set_metadata(damaged, **values)
    status, _, err = predict(capsys, "--model", str(damaged), "--text", "EU rejects German call")
    assert_clear(status, err, MODEL_METADATA_FILE, *fragments)


# --- defects 11, 12, 13: input and output paths ----------------------------------------------------------
def test_output_folder_is_refused_and_left_alone(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "old.jsonl").write_text("kept\n", encoding="utf-8")
    status, _, err = predict(capsys, "--model", str(model_dir), "--text", "EU", "--output", str(folder))
    assert_clear(status, err, "[output]", "is a folder")
    assert sorted(p.name for p in folder.iterdir()) == ["old.jsonl"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


@pytest.mark.parametrize("spelling", ["same", "dotted", "hard link"])
def test_output_equal_to_input_is_refused_and_the_input_kept(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    source = tmp_path / "docs.txt"
    source.write_text("EU rejects German call\nPeter Blackburn\n", encoding="utf-8")
    output = {"same": source, "dotted": tmp_path / "." / "docs.txt", "hard link": tmp_path / "link.txt"}[
        spelling
    ]
    if spelling == "hard link":
        os.link(source, output)
    status, _, err = predict(
        capsys, "--model", str(model_dir), "--input", str(source), "--output", str(output)
    )
    assert_clear(status, err, "[output]", "is the input file")
    assert source.read_text(encoding="utf-8") == "EU rejects German call\nPeter Blackburn\n"


def test_input_folder_says_it_is_a_folder(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = predict(capsys, "--model", str(model_dir), "--input", str(tmp_path))
    assert_clear(status, err, "[input]", "is a folder")
    assert "does not exist" not in err


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [("--threads", "-3", "--threads must be >= 0"), ("--batch-size", "0", "--batch-size must be >= 1")],
)
def test_negative_threads_and_zero_batch_are_refused(
    model_dir: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, fragment: str
) -> None:
    status, out, err = predict(capsys, "--model", str(model_dir), "--text", "EU", option, value)
    assert_clear(status, err, fragment)
    assert out == ""


def test_good_options_still_tag(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out" / "tags.jsonl"
    status, _, err = predict(
        capsys, "--model", str(model_dir), "--text", "EU rejects", "--threads", "1", "--output", str(output)
    )
    assert status == 0, err
    assert [t["text"] for t in json.loads(output.read_text(encoding="utf-8"))["tokens"]] == ["EU", "rejects"]


def test_console_script_exits_2_without_traceback(damaged: Path) -> None:
    (damaged / "tokenizer.json").write_text("{not json", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("NER_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "ner_lightning.onnx.predict_cli", "--model", str(damaged), "--text", "EU"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "tokenizer.json" in result.stderr
