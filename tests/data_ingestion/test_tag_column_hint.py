"""A label-first file read with the default tag column is named as a tag-column mistake (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ner_lightning.data.conll import read_conll
from ner_lightning.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def test_label_first_file_without_tag_column_suggests_tag_column_0() -> None:
    with pytest.raises(DataError) as error:
        read_conll(FIXTURES / "mit_label_first.bio")
    assert error.value.line == 1 and error.value.field == "tag_column"
    assert "tag column 1 holds 'what', which is not a tag, while column 0 holds 'O'" in error.value.message
    assert "--tag-column 0" in error.value.fix
    assert read_conll(FIXTURES / "mit_label_first.bio", tag_column=0)[0].tags[:3] == (
        "O",
        "B-Actor",
        "I-Actor",
    )


def test_word_first_files_are_unaffected() -> None:
    sentences = read_conll(FIXTURES / "conll2003_style.conll")
    assert sentences and all(tag == "O" or tag[1] == "-" for s in sentences for tag in s.tags)
