"""The canonical dataset-folder reader: the toy dataset reads, and every kind of bad input names its file and line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ner_lightning.contract import LABELS_FILE, SPLIT_FILES, TAGS_FIELD, TOKENS_FIELD
from ner_lightning.data.records import Example, derive_labels, load_dataset_folder, read_labels, read_split
from ner_lightning.errors import DataError
from tests.conftest import FIXTURES, REPO_ROOT

TOY = FIXTURES / "toy_dataset"
GOOD = json.dumps({"tokens": ["EU", "rejects", "it"], "ner_tags": ["B-ORG", "O", "O"]})


def write_folder(
    root: Path, train: str | bytes, validation: str = GOOD + "\n", labels: list[str] | None = None
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    train_path = root / SPLIT_FILES["train"]
    if isinstance(train, bytes):
        train_path.write_bytes(train)
    else:
        train_path.write_text(train, encoding="utf-8")
    (root / SPLIT_FILES["validation"]).write_text(validation, encoding="utf-8")
    if labels is not None:
        (root / LABELS_FILE).write_text(json.dumps(labels), encoding="utf-8")
    return root


def test_toy_dataset_reads_with_line_numbers_and_labels() -> None:
    folder = load_dataset_folder(TOY)
    assert {name: len(examples) for name, examples in folder.splits.items()} == {
        "train": 24,
        "validation": 8,
        "test": 6,
    }
    assert folder.labels_from_file
    assert folder.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    first = folder.splits["train"][0]
    assert first == Example(
        tokens=("Angela", "Merkel", "visited", "Paris", "on", "Monday", "."),
        tags=("B-PER", "I-PER", "O", "B-LOC", "O", "O", "O"),
        path=str(TOY / "train.jsonl"),
        line=1,
    )
    assert [e.line for e in folder.splits["test"]] == [1, 2, 3, 4, 5, 6]
    assert max(len(e.tokens) for e in folder.splits["train"]) > 40
    assert any(any(ord(ch) > 127 for token in e.tokens for ch in token) for e in folder.splits["train"])


def test_labels_are_derived_when_labels_json_is_absent(tmp_path: Path) -> None:
    shutil.copytree(TOY, tmp_path / "toy")
    (tmp_path / "toy" / LABELS_FILE).unlink()
    folder = load_dataset_folder(tmp_path / "toy")
    assert not folder.labels_from_file
    assert folder.labels == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_derive_labels_gives_every_type_both_tags() -> None:
    examples = [Example(("a", "b"), ("I-zeta", "O")), Example(("c",), ("B-alpha",))]
    assert derive_labels(examples) == ["O", "B-alpha", "I-alpha", "B-zeta", "I-zeta"]


def test_blank_lines_and_byte_order_mark_keep_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text("\ufeff" + GOOD + "\n\n   \n" + GOOD + "\n", encoding="utf-8")
    assert [e.line for e in read_split(path)] == [1, 4]


def test_extra_keys_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"id": 7, "tokens": ["x"], "ner_tags": ["O"]}) + "\n", encoding="utf-8")
    assert read_split(path)[0].tokens == ("x",)


BAD_LINES = {
    "malformed JSON": ('{"tokens": ["a"], "ner_tags": ["O"]', "malformed JSON", None),
    "not an object": ('[["a"], ["O"]]', "expected a JSON object", None),
    "missing tokens": ('{"ner_tags": ["O"]}', "field is missing", TOKENS_FIELD),
    "missing tags": ('{"tokens": ["a"]}', "field is missing", TAGS_FIELD),
    "tokens not a list": ('{"tokens": "a b", "ner_tags": ["O", "O"]}', "array of strings", TOKENS_FIELD),
    "tags hold a number": ('{"tokens": ["a"], "ner_tags": [0]}', "array of strings", TAGS_FIELD),
    "length mismatch": ('{"tokens": ["a", "b"], "ner_tags": ["O"]}', "2 tokens but 1 tags", TAGS_FIELD),
    "zero tokens": ('{"tokens": [], "ner_tags": []}', "zero tokens", TOKENS_FIELD),
    "blank token": (
        '{"tokens": ["a", " "], "ner_tags": ["O", "O"]}',
        "empty or only whitespace",
        TOKENS_FIELD,
    ),
    "not IOB2": ('{"tokens": ["a"], "ner_tags": ["PER"]}', "not IOB2", TAGS_FIELD),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_line_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    line, message, field = BAD_LINES[case]
    folder = write_folder(tmp_path / "data", GOOD + "\n" + GOOD + "\n" + line + "\n" + GOOD + "\n")
    with pytest.raises(DataError) as raised:
        load_dataset_folder(folder)
    error = raised.value
    assert error.path == str(folder / "train.jsonl")
    assert error.line == 3
    assert error.field == field
    assert "train.jsonl:3" in str(error)
    assert message in str(error)
    assert error.fix


def test_tag_not_in_labels_json(tmp_path: Path) -> None:
    bad = json.dumps({"tokens": ["Bob"], "ner_tags": ["B-PER"]})
    folder = write_folder(
        tmp_path / "data", GOOD + "\n", validation=GOOD + "\n" + bad + "\n", labels=["O", "B-ORG", "I-ORG"]
    )
    with pytest.raises(
        DataError, match=r"validation\.jsonl:2 \[ner_tags\]: tag 'B-PER' \(word 0\) is not in labels\.json"
    ):
        load_dataset_folder(folder)


def test_non_utf8_line(tmp_path: Path) -> None:
    latin1 = json.dumps({"tokens": ["München"], "ner_tags": ["B-LOC"]}, ensure_ascii=False).encode("latin-1")
    folder = write_folder(tmp_path / "data", (GOOD + "\n" + GOOD + "\n").encode() + latin1 + b"\n")
    with pytest.raises(DataError, match=r"train\.jsonl:3: not UTF-8") as raised:
        load_dataset_folder(folder)
    assert "UTF-8" in (raised.value.fix or "")


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_empty_split_file(tmp_path: Path, content: str) -> None:
    folder = write_folder(tmp_path / "data", content)
    with pytest.raises(DataError, match=r"train\.jsonl: split file holds no examples"):
        load_dataset_folder(folder)


def test_missing_required_split(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "data", GOOD + "\n")
    (folder / "validation.jsonl").unlink()
    with pytest.raises(DataError, match=r"validation\.jsonl: required split 'validation' is missing"):
        load_dataset_folder(folder)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset folder does not exist"):
        load_dataset_folder(tmp_path / "nowhere")


def test_optional_test_split_is_read_when_present(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "data", GOOD + "\n")
    assert set(load_dataset_folder(folder).splits) == {"train", "validation"}
    (folder / "test.jsonl").write_text("not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"test\.jsonl:1: malformed JSON"):
        load_dataset_folder(folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('["O", "B-PER"', "malformed JSON"),
        ('{"O": 0}', "array of strings"),
        ('["B-PER", "O"]', 'first label must be "O"'),
        ('["O", "B-PER", "B-PER"]', "listed twice"),
        ('["O", "PER"]', "not IOB2"),
    ],
)
def test_bad_labels_json(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / LABELS_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"labels\.json") as raised:
        read_labels(tmp_path)
    assert message in str(raised.value)


def test_reader_and_windows_stay_torch_free() -> None:
    code = (
        "import sys, ner_lightning.data.records, ner_lightning.data.windows; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'lightning')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
