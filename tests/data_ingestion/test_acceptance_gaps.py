"""Issue 3 gaps: every bad-input case through `ner-data convert` (exit 2, located message, nothing
written), and tests that read ../shared/data skip with a reason when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ner_lightning.data.cli import main
from tests.conftest import REPO_ROOT

GOOD = "Ann\tB-PER\nlives\tO\n\n"
BAD_CONLL: dict[str, tuple[bytes, str, str]] = {
    # case: (file bytes, expected message part, expected location)
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary", "train.conll"),
    "wrong encoding": (
        "Zürich\tB-LOC\n".encode() + "Genève\tB-LOC\n".encode("latin-1"),
        "UTF-8",
        "train.conll:2",
    ),
    "wrong column count": (b"EU\tB-ORG\nrejects\tO\textra\n", "columns", "train.conll:2"),
    "orphan I- tag": (
        b"in\tO\nRome\tI-LOC\n\n",
        "no opening B-",
        "train.conll:1: word 2",
    ),  # sentence line + word
    "empty split": (b"\n  \n", "no sentences", "train.conll"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONLL))
def test_bad_conll_input_exits_2_with_a_located_fix_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    content, message, location = BAD_CONLL[case]
    train = tmp_path / "train.conll"
    train.write_bytes(content)
    dev = tmp_path / "dev.conll"
    dev.write_text(GOOD, encoding="utf-8")
    output = tmp_path / "out"
    code = main(
        [
            "convert",
            "--format",
            "conll",
            "--train",
            str(train),
            "--validation",
            str(dev),
            "--output",
            str(output),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert location in err and message in err and "Fix:" in err
    assert "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir() if "out" in p.name] == []  # no folder, no temp leftovers


def test_shared_data_tests_skip_with_a_reason_when_the_corpora_are_absent(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests/data_ingestion/test_convert.py::test_wnut17_converts_and_validates_with_the_published_counts",
            "tests/data_ingestion/test_spans.py::test_resume_corpus_every_span_accounted_for",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NER_SHARED_DATA": str(tmp_path / "absent")},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 skipped" in result.stdout
    assert f"real corpora not available: {tmp_path / 'absent'} does not exist" in result.stdout
