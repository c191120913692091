"""`ner-data` against careless input (issue 14, defects 2, 9, 10, 13): refused with file:line and a fix, inputs kept.

Every case runs the real command line (`python -m ner_lightning.data.cli`) in a subprocess and
checks exit status, message, that no traceback is printed and that the input files are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

TRAIN = "EU\tB-ORG\nrejects\tO\nGerman\tB-MISC\ncall\tO\n\nPeter\tB-PER\nBlackburn\tI-PER\n\n"
VALIDATION = "BRUSSELS\tB-LOC\n1996-08-22\tO\n\nPeter\tB-PER\n\n"


def ner_data(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m ner_lightning.data.cli` in `cwd` with this checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("NER_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "ner_lightning.data.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `folder` (what must survive a refused command)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """`<tmp>/work` holding raw/train.conll and raw/val.conll; commands run here."""
    work = tmp_path / "work"
    (work / "raw").mkdir(parents=True)
    (work / "raw" / "train.conll").write_text(TRAIN, encoding="utf-8")
    (work / "raw" / "val.conll").write_text(VALIDATION, encoding="utf-8")
    return work


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr, result.stderr
    assert "Fix:" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# --- defect 2: --overwrite never destroys an input -------------------------------------------------
@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("raw", "contains the input file"),  # the case: deleted both raw files, exit 0
        ("raw/train.conll", "is the input file"),  # renamed the input away
        ("raw/train.conll/sub", "lies inside the input"),
        ("./raw/../raw", "contains the input file"),
        ("..", "contains the input file"),  # was a traceback (os.replace of '..')
        (".", "contains the input file"),
    ],
)
def test_convert_overwrite_refuses_an_output_that_is_contains_or_lies_in_an_input(
    workdir: Path, output: str, problem: str
) -> None:
    before = tree_digest(workdir.parent)
    result = ner_data(
        "convert", "--format", "conll", "--train", "raw/train.conll", "--validation", "raw/val.conll",
        "--output", output, "--overwrite", cwd=workdir,
    )  # fmt: skip
    assert_refused(result, problem)
    assert tree_digest(workdir.parent) == before  # nothing written, nothing deleted, no temp folder
    assert sorted(p.name for p in workdir.parent.rglob(".*")) == []


def test_convert_output_that_is_the_current_folder_is_refused_even_without_inputs_inside(
    workdir: Path,
) -> None:
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("keep me", encoding="utf-8")
    before = tree_digest(workdir)
    result = ner_data(
        "convert", "--format", "conll", "--train", "../raw/train.conll", "--validation", "../raw/val.conll",
        "--output", ".", "--overwrite", cwd=elsewhere,
    )  # fmt: skip
    assert_refused(result, "current folder")
    assert tree_digest(workdir) == before


def test_overwrite_replaces_a_dataset_folder_but_never_another_folder_or_a_file(workdir: Path) -> None:
    common = ["convert", "--format", "conll", "--train", "raw/train.conll", "--validation", "raw/val.conll"]
    assert ner_data(*common, "--output", "data/v1", cwd=workdir).returncode == 0
    assert (
        ner_data(*common, "--output", "data/v1", "--overwrite", cwd=workdir).returncode == 0
    )  # a dataset folder
    (workdir / "notes").mkdir()
    (workdir / "notes" / "thesis.tex").write_text("years of work", encoding="utf-8")
    (workdir / "file.txt").write_text("a file", encoding="utf-8")
    before = tree_digest(workdir)
    assert_refused(ner_data(*common, "--output", "notes", "--overwrite", cwd=workdir), "not a dataset folder")
    assert_refused(ner_data(*common, "--output", "file.txt", "--overwrite", cwd=workdir), "is a file")
    assert tree_digest(workdir) == before


def test_split_refuses_an_output_folder_holding_its_input(workdir: Path) -> None:
    lines = [json.dumps({"tokens": [f"w{i}", "x"], "ner_tags": ["B-PER", "O"]}) for i in range(20)]
    (workdir / "raw" / "all.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = tree_digest(workdir)
    result = ner_data("split", "raw/all.jsonl", "--output", "raw", "--overwrite", cwd=workdir)
    assert_refused(result, "contains the input file")
    assert tree_digest(workdir) == before


# --- defect 9: BIOES / BILOU well-formedness --------------------------------------------------------
BROKEN = {
    "S then E": ("bioes", "Peter\tS-PER\nSmith\tE-PER\n", "'E-PER' does not continue", ["B-PER", "B-PER"]),
    "S then I": ("bioes", "Peter\tS-PER\nSmith\tI-PER\n", "'I-PER' does not continue", ["B-PER", "B-PER"]),
    "B then B": ("bioes", "Peter\tB-PER\nSmith\tB-PER\n", "'B-PER' opens an entity that is never closed", ["B-PER", "B-PER"]),
    "E first": ("bioes", "Smith\tE-PER\nsaid\tO\n", "'E-PER' does not continue", ["B-PER", "O"]),
    "U then L": ("bilou", "Peter\tU-PER\nSmith\tL-PER\n", "'L-PER' does not continue", ["B-PER", "B-PER"]),
    "B then O": ("bilou", "Peter\tB-PER\nsaid\tO\n", "never closed", ["B-PER", "O"]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_bioes_and_bilou_are_refused_with_file_line_or_repaired(workdir: Path, case: str) -> None:
    scheme, sentence, message, repaired = BROKEN[case]
    good = "EU\tS-ORG\nsaid\tO\n" if scheme == "bioes" else "EU\tU-ORG\nsaid\tO\n"
    (workdir / "raw" / "in.conll").write_text(f"{good}\n{sentence}\n", encoding="utf-8")
    common = [
        "convert",
        "--format",
        "conll",
        "--scheme",
        scheme,
        "--input",
        "raw/in.conll",
        "--ratios",
        "0.5",
        "0.5",
    ]
    result = ner_data(*common, "--output", "out", cwd=workdir)
    assert_refused(result, "raw/in.conll:4: word", message, "--repair")
    assert not (workdir / "out").exists()

    fixed = ner_data(*common, "--output", "out", "--repair", "--seed", "1", cwd=workdir)
    assert fixed.returncode == 0, fixed.stderr
    assert "repaired" in fixed.stdout
    rows = [
        json.loads(line) for f in ("train.jsonl", "validation.jsonl") for line in (workdir / "out" / f).open()
    ]
    assert {"tokens": sentence.split()[::2], "ner_tags": repaired} in rows
    report = json.loads((workdir / "out" / "conversion_report.json").read_text(encoding="utf-8"))
    assert report["repaired_iob2_tags"] >= 1


def test_well_formed_bioes_converts_as_before(workdir: Path) -> None:
    text = "Peter\tB-PER\nvan\tI-PER\nSmith\tE-PER\nin\tO\nEU\tS-ORG\n\n"
    (workdir / "raw" / "a.conll").write_text(text, encoding="utf-8")
    result = ner_data(
        "convert", "--format", "conll", "--scheme", "bioes", "--train", "raw/a.conll", "--validation", "raw/a.conll",
        "--output", "out", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    row = json.loads((workdir / "out" / "train.jsonl").read_text(encoding="utf-8"))
    assert row["ner_tags"] == ["B-PER", "I-PER", "I-PER", "O", "B-ORG"]


# --- defect 10: span labels with a prefix, and the label O ------------------------------------------
def test_prefixed_span_labels_are_stripped_and_counted_and_label_o_is_rejected(workdir: Path) -> None:
    records = [
        {"text": "EU rejects Berlin call", "spans": [[0, 2, "B-ORG"], [3, 10, "O"], [11, 17, "I-LOC"]]},
        {"text": "Paris and Rome", "spans": [[0, 5, "LOC"], [10, 14, "B-LOC"]]},
    ]
    (workdir / "raw" / "spans.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records), encoding="utf-8"
    )
    result = ner_data(
        "convert", "--format", "spans", "--train", "raw/spans.jsonl", "--validation", "raw/spans.jsonl",
        "--output", "out", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "stripped the B-/I- prefix of 6 span label(s)" in result.stdout  # 3 per input file, read twice
    labels = json.loads((workdir / "out" / "labels.json").read_text(encoding="utf-8"))
    assert labels == ["O", "B-LOC", "B-ORG", "I-LOC", "I-ORG"]  # no B-B-LOC, no B-O
    rows = [json.loads(line) for line in (workdir / "out" / "train.jsonl").open()]
    assert rows[0]["ner_tags"] == ["B-ORG", "O", "B-LOC", "O"]
    rejects = [json.loads(line) for line in (workdir / "out" / "rejects.jsonl").open()]
    assert [(r["label"], r["reason"]) for r in rejects] == [("O", "outside_label")] * 2
    spans = json.loads((workdir / "out" / "conversion_report.json").read_text(encoding="utf-8"))["spans"]
    assert spans["stripped_label_prefixes"] == 6
    assert spans["dropped_by_reason"] == {"outside_label": 2}
    assert spans["kept_spans"] + spans["dropped_spans"] == spans["total_spans"] == 10


# --- defect 13: messages point at the user's file and tag -------------------------------------------
@pytest.mark.parametrize(
    ("content", "where"),
    [
        ("EU\tB-ORG\n\u00a0\tO\n\n", "raw/bad.conll:2"),  # a word that is only a no-break space
        ("EU\tB-ORG\n \tO\n\n", "raw/bad.conll:2"),
        ("EU\tB-ORG\n\tO\n\n", "raw/bad.conll:2"),
    ],
)
def test_whitespace_words_point_at_the_input_line_not_at_train_jsonl(
    workdir: Path, content: str, where: str
) -> None:
    (workdir / "raw" / "bad.conll").write_text(content, encoding="utf-8")
    result = ner_data(
        "convert", "--format", "conll", "--train", "raw/bad.conll", "--validation", "raw/val.conll",
        "--output", "out", cwd=workdir,
    )  # fmt: skip
    assert_refused(result, where, "empty or whitespace only")
    assert "train.jsonl" not in result.stderr  # an output that was never written


def test_whitespace_words_in_hf_jsonl_point_at_the_input_line(workdir: Path) -> None:
    lines = [
        {"tokens": ["EU", "rejects"], "ner_tags": ["B-ORG", "O"]},
        {"tokens": ["a", " "], "ner_tags": ["O", "O"]},
    ]
    (workdir / "raw" / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    result = ner_data(
        "convert", "--format", "hf-jsonl", "--train", "raw/in.jsonl", "--validation", "raw/in.jsonl",
        "--output", "out", cwd=workdir,
    )  # fmt: skip
    assert_refused(result, "raw/in.jsonl:2 [tokens]", "word(s) [2]")


def test_an_e_first_error_quotes_the_tag_in_the_file(workdir: Path) -> None:
    (workdir / "raw" / "e.conll").write_text("Smith\tE-PER\n\n", encoding="utf-8")
    result = ner_data(
        "convert", "--format", "conll", "--scheme", "bioes", "--train", "raw/e.conll", "--validation",
        "raw/e.conll", "--output", "out", cwd=workdir,
    )  # fmt: skip
    assert_refused(result, "raw/e.conll:1: word 1", "'E-PER'")
    assert "'I-PER'" not in result.stderr  # the converted tag the user never wrote


def test_conll_word_keeps_no_edge_whitespace(workdir: Path) -> None:
    (workdir / "raw" / "ws.conll").write_text("EU \tB-ORG\n rejects\tO\n\n", encoding="utf-8")
    result = ner_data(
        "convert", "--format", "conll", "--train", "raw/ws.conll", "--validation", "raw/ws.conll",
        "--output", "out", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    row = json.loads((workdir / "out" / "train.jsonl").read_text(encoding="utf-8"))
    assert row["tokens"] == ["EU", "rejects"]


def test_debug_flag_shows_the_traceback_of_a_known_error(workdir: Path) -> None:
    quiet = ner_data("stats", "missing-folder", cwd=workdir)
    loud = ner_data("stats", "missing-folder", "--debug", cwd=workdir)
    assert quiet.returncode == loud.returncode == 2
    assert "Traceback" not in quiet.stderr and "Traceback" in loud.stderr
    assert "no split could be read" in quiet.stderr and "no split could be read" in loud.stderr
