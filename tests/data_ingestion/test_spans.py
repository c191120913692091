"""Character spans -> IOB2: mapping, overlap rules, every rejected span accounted for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ner_lightning.data.spans import SpanConversion, read_span_jsonl, tokenize
from ner_lightning.errors import DataError
from ner_lightning.tags import extract_entities


def _write(tmp_path: Path, *records: object) -> Path:
    path = tmp_path / "spans.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _entities(result: SpanConversion) -> list[tuple[str, str]]:
    return [
        (" ".join(s.tokens[e.start : e.end]), e.type)
        for s in result.sentences
        for e in extract_entities(s.tags)
    ]


def _assert_accounted(result: SpanConversion) -> None:
    assert len(result.kept) + len(result.rejected) == result.total
    assert len(result.kept) == sum(len(extract_entities(s.tags)) for s in result.sentences)
    for span in result.kept:
        words = result.sentences[span.sentence].tokens[span.token_start : span.token_end]
        assert "".join(words) == re.sub(r"\s", "", span.text)
        tags = result.sentences[span.sentence].tags[span.token_start : span.token_end]
        assert tags == (f"B-{span.label}",) + (f"I-{span.label}",) * (len(words) - 1)


def test_text_shape_lines_and_longest_overlap_rule(fixtures: Path) -> None:
    result = read_span_jsonl(fixtures / "spans.jsonl")
    assert _entities(result) == [
        ("Alice Smith", "PER"),
        ("Acme Corp", "ORG"),
        ("Paris", "LOC"),
        ("Bob", "PER"),
        ("New York", "LOC"),
    ]
    # The second document is cut at its line break into two examples of the same document.
    assert [s.tokens for s in result.sentences[1:]] == [
        ("Bob", "visited", "New", "York", "."),
        ("He", "liked", "it", "."),
    ]
    assert {s.document for s in result.sentences[1:]} == {1}
    assert [(r.reason, r.start, r.end) for r in result.rejected] == [("overlap", 12, 15)]
    _assert_accounted(result)


def test_first_and_drop_overlap_rules(tmp_path: Path) -> None:
    path = _write(tmp_path, {"text": "New York City", "spans": [[0, 8, "LOC"], [4, 13, "LOC"]]})
    assert _entities(read_span_jsonl(path, overlap="first")) == [("New York", "LOC")]
    assert _entities(read_span_jsonl(path, overlap="longest")) == [("York City", "LOC")]  # tie: earliest
    dropped = read_span_jsonl(path, overlap="drop")
    assert _entities(dropped) == [] and [r.reason for r in dropped.rejected] == ["overlap", "overlap"]


def test_dataturks_shape_inclusive_end_trimmed_whitespace_and_unknown_label(fixtures: Path) -> None:
    result = read_span_jsonl(fixtures / "dataturks.json")
    assert _entities(result) == [
        ("Jane Doe", "Name"),
        ("Senior Engineer", "Designation"),
        ("Globex", "Companies worked at"),
    ]
    assert [r.reason for r in result.rejected] == ["unknown_label"]
    _assert_accounted(result)


def test_every_bad_span_is_rejected_with_its_reason(tmp_path: Path) -> None:
    text = "Ann met Bob in Rome today"
    path = _write(
        tmp_path,
        {
            "text": text,
            "spans": [
                [0, 3, "PER"],  # kept
                [0, 3, "PER"],  # duplicate
                [8, 100, "PER"],  # past the end of the text
                [12, 8, "PER"],  # start > end
                [15, 19, "   "],  # whitespace-only label
                [8, 11, ""],  # empty label
                [16, 19, "LOC"],  # starts inside "Rome"
                [3, 4, "X"],  # only whitespace
                ["a", 2, "X"],  # offsets not integers
                [15, 19, "LOC"],  # kept
                [0, 2, "PER", "extra"],  # not a [start, end, label] triple
            ],
        },
    )
    result = read_span_jsonl(path)
    reasons = sorted(r.reason for r in result.rejected)
    assert reasons == sorted(
        [
            "duplicate",
            "out_of_range",
            "start_after_end",
            "empty_label",
            "empty_label",
            "crosses_token_boundary",
            "whitespace_span",
            "bad_offsets",
            "bad_offsets",
        ]
    )
    assert _entities(result) == [("Ann", "PER"), ("Rome", "LOC")]
    assert result.report()["total_spans"] == 11
    _assert_accounted(result)
    by_reason = {r.reason: r for r in result.rejected}
    assert (
        by_reason["out_of_range"].record == 1 and "outside a text of 25" in by_reason["out_of_range"].detail
    )


def test_ten_thousand_word_document_is_cut_into_bounded_examples(tmp_path: Path) -> None:
    words = [f"w{i}" for i in range(10_000)]
    text = " ".join(words)
    start = text.index("w5000")
    entity_end = text.index("w5003") + len("w5003")
    path = _write(tmp_path, {"text": text, "spans": [[start, entity_end, "BIG"]]})
    result = read_span_jsonl(path, max_words=100)
    assert sum(len(s.tokens) for s in result.sentences) == 10_000
    assert max(len(s.tokens) for s in result.sentences) <= 100
    assert _entities(result) == [("w5000 w5001 w5002 w5003", "BIG")]
    _assert_accounted(result)


def test_long_lines_are_cut_after_a_sentence_end(tmp_path: Path) -> None:
    path = _write(tmp_path, {"text": "a b c. d e f g. h", "spans": []})
    result = read_span_jsonl(path, max_words=5)
    assert [s.tokens for s in result.sentences] == [("a", "b", "c", "."), ("d", "e", "f", "g", "."), ("h",)]


def test_record_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "spans": []}\n{"text": "broken\n', encoding="utf-8")
    with pytest.raises(DataError, match="malformed JSON") as error:
        read_span_jsonl(path)
    assert error.value.line == 2
    path.write_text('{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="neither 'content' nor 'text'") as error:
        read_span_jsonl(path)
    assert error.value.line == 1 and error.value.fix


def test_tokenizer_offsets_cover_the_words() -> None:
    text = "e-mail: jane.doe@x.com, C++ (5 yrs)\nZürich"
    for word, start, end in tokenize(text):
        assert text[start:end] == word and word.strip() == word


def test_resume_corpus_every_span_accounted_for(shared_data: Path) -> None:
    folder = shared_data / "resume_dataturks"
    for name in ("traindata.json", "testdata.json"):
        total = 0
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            for annotation in json.loads(line)["annotation"] or []:
                total += len(annotation["points"]) * max(1, len(annotation["label"]))
        result = read_span_jsonl(folder / name)
        report = result.report()
        assert report["total_spans"] == total
        assert report["kept_spans"] + report["dropped_spans"] == total
        assert report["kept_spans"] + sum(report["dropped_by_reason"].values()) == total
        _assert_accounted(result)
    # The training file has labels "UNKNOWN", empty label lists and offsets that disagree with
    # their stored text: each shows up under its reason.
    reasons = read_span_jsonl(folder / "traindata.json").report()["dropped_by_reason"]
    assert {"unknown_label", "empty_label", "text_mismatch", "overlap"} <= set(reasons)
