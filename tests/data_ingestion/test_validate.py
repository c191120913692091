"""The validation report: every problem collected with its file and line, errors vs warnings."""

from __future__ import annotations

import json
from pathlib import Path

from ner_lightning.data.cli import main
from ner_lightning.data.validate import validate_folder
from tests.data_ingestion.folders import rec, write_folder

LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _good(tmp_path: Path) -> Path:
    return write_folder(
        tmp_path / "ds",
        {
            "train.jsonl": [rec("Ann lives in Rome", "B-PER O O B-LOC"), rec("Bob Lee", "B-PER I-PER")],
            "validation.jsonl": [rec("Cy went to Oslo", "B-PER O O B-LOC")],
        },
        LABELS,
    )


def test_clean_folder_passes_with_counts(tmp_path: Path) -> None:
    report = validate_folder(_good(tmp_path))
    assert report.ok and report.issues == []
    assert report.to_dict()["splits"]["train"] == {
        "file": "train.jsonl",
        "sentences": 2,
        "tokens": 6,
        "entities": 3,
        "entities_by_type": {"LOC": 1, "PER": 2},
    }
    assert "sentences" in report.summary_table() and "PER" in report.summary_table()


def test_all_problems_are_collected_not_just_the_first(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "ds",
        {
            "train.jsonl": [
                rec("Ann lives", "B-PER O"),
                '{"tokens": ["a"], "ner_tags": ["O"]',  # malformed JSON
                '{"tokens": ["a"]}',  # missing field
                '{"tokens": ["a", "b"], "ner_tags": ["O"]}',  # wrong length
                '{"tokens": [], "ner_tags": []}',  # zero tokens
                '{"tokens": ["a", " "], "ner_tags": ["O", "O"]}',  # empty token
                rec("in Rome", "O I-LOC"),  # I- without B-
                rec("Mars", "B-PLANET"),  # not in labels.json
                "[1, 2]",  # not an object
            ],
            "validation.jsonl": [],
        },
        LABELS,
    )
    report = validate_folder(folder)
    assert not report.ok
    found = {(i.code, i.file, i.line) for i in report.errors}
    assert found >= {
        ("malformed_json", "train.jsonl", 2),
        ("missing_field", "train.jsonl", 3),
        ("length_mismatch", "train.jsonl", 4),
        ("empty_sentence", "train.jsonl", 5),
        ("empty_token", "train.jsonl", 6),
        ("iob2_orphan_i", "train.jsonl", 7),
        ("tag_not_in_labels", "train.jsonl", 8),
        ("not_object", "train.jsonl", 9),
        ("empty_split", "validation.jsonl", None),
    }
    assert all(i.fix for i in report.errors)


def test_missing_split_binary_and_wrong_encoding(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "ds", {"train.jsonl": [rec("a", "O")]})
    (folder / "test.jsonl").write_bytes(b"\x00\x01binary")
    report = validate_folder(folder)
    assert {(i.code, i.file) for i in report.errors} == {
        ("missing_split", "validation.jsonl"),
        ("unreadable_file", "test.jsonl"),
    }
    (folder / "validation.jsonl").write_bytes('{"tokens": ["Genève"], "ner_tags": ["O"]}\n'.encode("latin-1"))
    codes = {(i.code, i.file, i.line) for i in validate_folder(folder).errors}
    assert ("unreadable_file", "validation.jsonl", 1) in codes


def test_leakage_and_label_set_warnings(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "ds",
        {
            "train.jsonl": [rec("Ann lives in Rome", "B-PER O O B-LOC")],
            "validation.jsonl": [rec("Ann lives in Rome", "B-PER O O B-LOC"), rec("Bob", "B-PER")],
            "test.jsonl": [rec("Mars", "B-PLANET")],
        },
    )
    report = validate_folder(folder)
    assert report.ok
    codes = {(i.code, i.file) for i in report.warnings}
    assert ("duplicate_across_splits", "validation.jsonl") in codes
    assert ("type_not_in_train", "test.jsonl") in codes
    assert ("type_missing_in_split", "test.jsonl") in codes
    assert report.labels == ["O", "B-LOC", "B-PER", "B-PLANET"]


def test_repair_flag_fixes_orphans_in_place(tmp_path: Path) -> None:
    folder = write_folder(
        tmp_path / "ds",
        {"train.jsonl": [rec("in Rome", "O I-LOC")], "validation.jsonl": [rec("Oslo", "I-LOC")]},
        LABELS,
    )
    assert [i.code for i in validate_folder(folder).errors] == ["iob2_orphan_i", "iob2_orphan_i"]
    report = validate_folder(folder, repair_iob2=True)
    assert report.ok and report.repaired == {"train.jsonl": 1, "validation.jsonl": 1}
    assert json.loads((folder / "train.jsonl").read_text(encoding="utf-8"))["ner_tags"] == ["O", "B-LOC"]
    assert validate_folder(folder).errors == []


def test_cli_validate_exit_codes_and_json(tmp_path: Path, capsys) -> None:
    good = _good(tmp_path)
    assert main(["validate", str(good)]) == 0
    bad = write_folder(
        tmp_path / "bad", {"train.jsonl": [rec("a", "I-PER")], "validation.jsonl": [rec("b", "O")]}
    )
    capsys.readouterr()
    assert main(["validate", str(bad), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["errors"][0]["code"] == "iob2_orphan_i"
    assert report["errors"][0]["line"] == 1
    assert main(["validate", str(tmp_path / "nowhere")]) == 1
