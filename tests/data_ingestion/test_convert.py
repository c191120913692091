"""`ner-data convert`/`split`/`stats`: canonical folders, determinism, fingerprints, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ner_lightning.data.cli import main
from ner_lightning.data.convert import ConvertOptions, convert
from ner_lightning.data.manifest import dataset_fingerprint, read_manifest
from ner_lightning.data.schemes import to_iob2
from ner_lightning.data.validate import validate_folder
from ner_lightning.errors import DataError
from tests.conftest import REPO_ROOT

CONLL = (
    "EU\tB-ORG\nrejects\tO\nGerman\tB-MISC\n\nPeter\tB-PER\nBlackburn\tI-PER\n\nin\tO\nBrussels\tB-LOC\n\n"
)


def _conll(tmp_path: Path, name: str = "in.conll", text: str = CONLL) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_wnut17_converts_and_validates_with_the_published_counts(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "wnut17"
    result = convert(
        {
            "train": source / "wnut17train.conll",
            "validation": source / "emerging.dev.conll",
            "test": source / "emerging.test.annotated",
        },
        tmp_path / "wnut17",
    )
    splits = validate_folder(tmp_path / "wnut17").to_dict()["splits"]
    assert [splits[s]["sentences"] for s in ("train", "validation", "test")] == [3394, 1009, 1287]
    # Entities = B- tags: no orphan I- tag exists in WNUT17, so both counts agree with the README
    # (1975/836/1079). `grep -c B-` on the raw train file says 1980: five words themselves start
    # with "B-" (e.g. hashtags) while tagged O.
    assert [splits[s]["entities"] for s in ("train", "validation", "test")] == [1975, 836, 1079]
    b_tags = sum(
        tag.startswith("B-")
        for line in (tmp_path / "wnut17" / "train.jsonl").read_text(encoding="utf-8").splitlines()
        for tag in json.loads(line)["ner_tags"]
    )
    assert b_tags == 1975 and result.report["repaired_iob2_tags"] == 0
    assert result.validation.ok
    assert json.loads((tmp_path / "wnut17" / "labels.json").read_text())[0] == "O"


def test_same_input_gives_byte_identical_output_and_fingerprint(tmp_path: Path) -> None:
    train, dev = _conll(tmp_path), _conll(tmp_path, "dev.conll", "Ann\tB-PER\n\n")
    first = convert({"train": train, "validation": dev}, tmp_path / "a")
    second = convert({"train": train, "validation": dev}, tmp_path / "b")
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    assert first.report["fingerprint"] == second.report["fingerprint"] == dataset_fingerprint(tmp_path / "a")
    assert read_manifest(tmp_path / "a")["fingerprint"] == dataset_fingerprint(tmp_path / "a")
    # One tag changed -> another fingerprint.
    _conll(tmp_path, "in.conll", CONLL.replace("Brussels\tB-LOC", "Brussels\tB-ORG"))
    third = convert({"train": train, "validation": dev}, tmp_path / "c")
    assert third.report["fingerprint"] != first.report["fingerprint"]


def test_fingerprint_ignores_paths_and_timestamps(tmp_path: Path) -> None:
    convert({"train": _conll(tmp_path), "validation": _conll(tmp_path, "dev.conll")}, tmp_path / "a")
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    (tmp_path / "a").rename(moved)
    for path in moved.iterdir():
        path.touch()
    assert dataset_fingerprint(moved) == read_manifest(moved)["fingerprint"]


def test_failed_conversion_writes_nothing(tmp_path: Path) -> None:
    train = _conll(tmp_path, text=CONLL + "Rome\tI-LOC\n")
    with pytest.raises(DataError, match="no opening B-"):
        convert({"train": train, "validation": _conll(tmp_path, "dev.conll")}, tmp_path / "out")
    bad_dev = _conll(tmp_path, "dev.conll", "a\tO\nb\tO\tX\n")
    with pytest.raises(DataError, match="columns"):
        convert({"train": _conll(tmp_path, "ok.conll"), "validation": bad_dev}, tmp_path / "out")
    assert list(tmp_path.glob("*out*")) == []
    # An existing folder survives a failed --overwrite untouched.
    good = convert(
        {"train": _conll(tmp_path, "ok.conll"), "validation": _conll(tmp_path, "d2.conll")}, tmp_path / "out"
    )
    before = _tree(good.folder)
    with pytest.raises(DataError):
        convert({"train": train, "validation": bad_dev}, tmp_path / "out", overwrite=True)
    assert _tree(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir() if "out" in p.name) == ["out"]


def test_repair_flag_and_other_schemes(tmp_path: Path) -> None:
    orphan = _conll(tmp_path, text="in\tO\nRome\tI-LOC\n\n")
    result = convert(
        {"train": orphan, "validation": orphan}, tmp_path / "r", ConvertOptions(repair_iob2=True)
    )
    assert result.report["repaired_iob2_tags"] == 2
    assert to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "iob1") == [
        "B-PER",
        "I-PER",
        "B-PER",
        "O",
        "B-LOC",
    ]
    assert to_iob2(["S-PER", "B-LOC", "I-LOC", "E-LOC"], "bioes") == ["B-PER", "B-LOC", "I-LOC", "I-LOC"]
    bioes = _conll(tmp_path, "bioes.conll", "Ann\tS-PER\nNew\tB-LOC\nYork\tE-LOC\n\n")
    convert({"train": bioes, "validation": bioes}, tmp_path / "b", ConvertOptions(scheme="bioes"))
    line = json.loads((tmp_path / "b" / "train.jsonl").read_text(encoding="utf-8"))
    assert line["ner_tags"] == ["B-PER", "B-LOC", "I-LOC"]
    with pytest.raises(DataError, match="not IOB2") as error:
        convert({"train": bioes, "validation": bioes}, tmp_path / "x")
    assert error.value.line == 1 and "--scheme" in error.value.fix


def test_hf_jsonl_with_tag_ids_and_a_single_file_split(tmp_path: Path) -> None:
    path = tmp_path / "hf.jsonl"
    path.write_text(
        "".join(json.dumps({"tokens": [f"w{i}", "Ann"], "ner_tags": [0, 1]}) + "\n" for i in range(20)),
        encoding="utf-8",
    )
    options = ConvertOptions(
        format="hf-jsonl", label_names=("O", "B-PER", "I-PER"), ratios=(0.8, 0.1, 0.1), seed=3
    )
    result = convert({"train": path}, tmp_path / "out", options)
    sizes = {name: stats["sentences"] for name, stats in result.report["splits"].items()}
    assert sizes == {"train": 16, "validation": 2, "test": 2}
    again = convert({"train": path}, tmp_path / "again", options)
    assert again.report["fingerprint"] == result.report["fingerprint"]
    with pytest.raises(DataError, match="no label list") as error:
        convert({"train": path}, tmp_path / "x", ConvertOptions(format="hf-jsonl"))
    assert error.value.line == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["a"]\n', "malformed JSON"),
        ('{"words": ["a"], "ner_tags": ["O"]}\n', "missing field 'tokens'"),
        ('{"tokens": [], "ner_tags": []}\n', "zero words"),
        ("", "no sentences"),
    ],
)
def test_bad_hf_jsonl_input_gives_exit_2_and_a_located_message(
    tmp_path: Path, capsys, content: str, message: str
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(content, encoding="utf-8")
    code = main(["convert", "--format", "hf-jsonl", "--input", str(path), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "in.jsonl" in err and "Fix:" in err
    assert not (tmp_path / "out").exists()


def test_span_input_writes_rejects_and_report(fixtures: Path, tmp_path: Path) -> None:
    code = main(
        [
            "convert",
            "--format",
            "spans",
            "--input",
            str(fixtures / "spans.jsonl"),
            "--ratios",
            "0.5",
            "0.5",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "conversion_report.json").read_text(encoding="utf-8"))
    assert report["spans"]["total_spans"] == 6 and report["spans"]["dropped_by_reason"] == {"overlap": 1}
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["reason"], r["start"], r["end"], r["record"]) for r in rejects] == [("overlap", 12, 15, 2)]


def test_resume_corpus_converts_with_its_test_file(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "resume_dataturks"
    result = convert(
        {"train": folder / "traindata.json", "test": folder / "testdata.json"},
        tmp_path / "resume",
        ConvertOptions(format="spans"),
    )
    spans = result.report["spans"]
    assert spans["kept_spans"] + spans["dropped_spans"] == spans["total_spans"] == 3208 + 350
    assert sum(s["entities"] for s in result.report["splits"].values()) == spans["kept_spans"]
    assert len((tmp_path / "resume" / "rejects.jsonl").read_text().splitlines()) == spans["dropped_spans"]


def test_split_and_stats_commands(tmp_path: Path, capsys) -> None:
    path = tmp_path / "all.jsonl"
    path.write_text("".join(json.dumps({"tokens": [f"s{i}"], "ner_tags": ["B-X"]}) + "\n" for i in range(10)))
    assert main(["split", str(path), "--output", str(tmp_path / "out"), "--ratios", "0.6", "0.2", "0.2"]) == 0
    assert (
        main(["split", str(path), "--output", str(tmp_path / "out2"), "--ratios", "0.6", "0.2", "0.2"]) == 0
    )
    assert _tree(tmp_path / "out") == _tree(tmp_path / "out2")
    capsys.readouterr()
    assert main(["stats", str(tmp_path / "out"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert [stats["splits"][s]["sentences"] for s in ("train", "validation", "test")] == [6, 2, 2]
    assert stats["fingerprint"] == dataset_fingerprint(tmp_path / "out")
    assert main(["split", str(path), "--output", str(tmp_path / "x"), "--ratios", "0.7", "0.7"]) == 2


def test_console_entry_runs_as_a_module_without_torch(tmp_path: Path) -> None:
    code = (
        "import sys, runpy; sys.argv = ['ner-data', 'validate', sys.argv[1]];"
        "\ntry:\n    runpy.run_module('ner_lightning.data.cli', run_name='__main__')\nexcept SystemExit as e:\n"
        "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'lightning'))\n"
        "    print(e.code, heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "missing")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1] == "1 []"
