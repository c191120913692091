"""CoNLL column files: reading quirks, bad input, and the CoNLL -> JSONL -> CoNLL round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ner_lightning.data.conll import read_conll, write_conll
from ner_lightning.data.hf_jsonl import canonical_jsonl, read_hf_jsonl
from ner_lightning.data.sentence import Sentence
from ner_lightning.errors import DataError


def test_conll2003_shape_with_bom_crlf_docstart_and_whitespace_separator(fixtures: Path) -> None:
    sentences = read_conll(fixtures / "conll2003_style.conll")
    assert [s.tokens for s in sentences] == [("EU", "rejects", "German", "call", "."), ("Peter", "Blackburn")]
    assert sentences[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")
    assert sentences[1].tags == ("B-PER", "I-PER")
    assert sentences[1].source.endswith(":9")


def test_label_first_files_via_tag_column(fixtures: Path) -> None:
    sentences = read_conll(fixtures / "mit_label_first.bio", tag_column=0)
    assert sentences[0].tokens == ("what", "tom", "hanks", "movies")
    assert sentences[0].tags == ("O", "B-Actor", "I-Actor", "O")
    assert sentences[1].tags == ("B-Genre", "O")


def test_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.conll"
    path.write_text("EU\tB-ORG\nrejects\tO\textra\n", encoding="utf-8")
    with pytest.raises(DataError, match="2 columns") as error:
        read_conll(path)
    assert error.value.line == 2 and error.value.path == str(path) and error.value.fix


def test_single_column_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.conll"
    path.write_text("EU\nrejects\n", encoding="utf-8")
    with pytest.raises(DataError, match="1 column") as error:
        read_conll(path)
    assert error.value.line == 1


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(DataError, match="binary"):
        read_conll(path)


def test_wrong_encoding_names_the_line_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conll"
    path.write_bytes("Zürich\tB-LOC\n".encode() + "Genève\tB-LOC\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8") as error:
        read_conll(path)
    assert error.value.line == 2 and "iconv" in error.value.fix


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_conll(tmp_path / "nope.conll")


def test_writer_refuses_tokens_it_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot be written"):
        write_conll([Sentence(("a\tb",), ("O",))], tmp_path / "out.conll")
    assert not (tmp_path / "out.conll").exists()


# Words: any text without the characters that structure a column file (and NUL, which marks binary files); unicode spaces
# (U+00A0, U+3000, U+2028, ...) inside words and combining marks included.
_word = st.text(
    alphabet=st.characters(blacklist_characters="\t\n\r\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
).filter(lambda w: w.strip() == w != "" and w != "-DOCSTART-")  # edge whitespace is not part of a word
_tag = st.sampled_from(["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-créature", "I-créature"])
_sentence = st.integers(1, 6).flatmap(
    lambda n: st.tuples(st.lists(_word, min_size=n, max_size=n), st.lists(_tag, min_size=n, max_size=n))
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_sentence, min_size=1, max_size=5))
def test_round_trip_conll_jsonl_conll(tmp_path: Path, data: list[tuple[list[str], list[str]]]) -> None:
    sentences = [Sentence(tuple(tokens), tuple(tags)) for tokens, tags in data]
    first = tmp_path / "first.conll"
    write_conll(sentences, first)
    read_back = read_conll(first)
    jsonl = tmp_path / "mid.jsonl"
    jsonl.write_text(canonical_jsonl(read_back), encoding="utf-8")
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        json.loads(line)  # one record per line even for line-separator characters inside words
    second = tmp_path / "second.conll"
    write_conll(read_hf_jsonl(jsonl), second)
    final = read_conll(second)
    assert [(s.tokens, s.tags) for s in final] == [(s.tokens, s.tags) for s in sentences]
    assert first.read_bytes() == second.read_bytes()
