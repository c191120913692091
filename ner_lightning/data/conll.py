"""CoNLL column files: one word per line, columns separated by tabs or spaces, blank line between sentences.

Covers the CoNLL-2003 shape (`word POS chunk tag`), the WNUT shape (`word<TAB>tag`) and the
label-first files of the MIT corpora (`tag<TAB>word`, read with `tag_column=0`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ner_lightning.data.sentence import Sentence
from ner_lightning.data.textfile import atomic_write_text, text_lines
from ner_lightning.errors import DataError

#: Token of the document separator lines of CoNLL-2003, which are not sentences.
DOCSTART: Final = "-DOCSTART-"


def _fields(line: str) -> list[str]:
    # A tab anywhere means tab-separated (tokens may then hold spaces, e.g. U+00A0); else any whitespace.
    if "\t" in line:
        return line.split("\t")
    return line.split()


def read_conll(path: str | Path, *, tag_column: int = -1, token_column: int | None = None) -> list[Sentence]:
    """Read a CoNLL column file into sentences (tags as they are in the file).

    `-DOCSTART-` lines are skipped; a line that is empty or holds only whitespace ends a sentence;
    whitespace around a word is not part of it (`EU \tB-ORG` is the word `EU`);
    a BOM and CRLF line ends are tolerated. Every word line must have as many columns as the first.

    Args:
        path: The file.
        tag_column: Column of the tag, 0-based; negative counts from the end (-1: last column,
            0: label-first files such as `B-Actor<TAB>tom`).
        token_column: Column of the word; default the first column that is not the tag column.

    Returns:
        The sentences in file order.

    Raises:
        DataError: Unreadable file, a line with a different number of columns, a missing column,
            an empty or whitespace-only word, or an empty tag.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 0
    expected_columns: int | None = None

    def close() -> None:
        if tokens:
            sentences.append(Sentence(tuple(tokens), tuple(tags), f"{path}:{start_line}"))
            tokens.clear()
            tags.clear()

    for number, line in enumerate(text_lines(path), 1):
        if not line.strip():
            close()
            continue
        fields = _fields(line)
        if expected_columns is None:
            expected_columns = len(fields)
            if expected_columns < 2:
                raise DataError(
                    f"line has 1 column ({line.strip()!r}); a CoNLL line needs a word and a tag",
                    path=path,
                    line=number,
                    fix="separate the word and the tag with a tab or a space",
                )
            tag_index = tag_column if tag_column >= 0 else expected_columns + tag_column
            token_index = token_column if token_column is not None else (1 if tag_index == 0 else 0)
            for name, index in (("tag", tag_index), ("token", token_index)):
                if not 0 <= index < expected_columns:
                    raise DataError(
                        f"{name} column {index} does not exist: the file has {expected_columns} columns",
                        path=path,
                        line=number,
                        field=f"{name}_column",
                        fix=f"pass a {name} column between 0 and {expected_columns - 1}",
                    )
            # A label-first file read with the default tag column: name the column mistake, not the scheme.
            looks_like_tag = [
                f.strip() == "O" or (f.strip()[1:2] == "-" and f.strip()[:1] in "BIESLU") for f in fields
            ]
            if not looks_like_tag[tag_index] and any(looks_like_tag):
                found = looks_like_tag.index(True)
                raise DataError(
                    f"tag column {tag_index} holds {fields[tag_index].strip()!r}, which is not a tag, while "
                    f"column {found} holds {fields[found].strip()!r}, which is one",
                    path=path,
                    line=number,
                    field="tag_column",
                    fix=f"pass --tag-column {found} (label-first files such as the MIT corpora need --tag-column 0)",
                )
        if len(fields) != expected_columns:
            raise DataError(
                f"line has {len(fields)} columns but the file's first word line has {expected_columns} columns",
                path=path,
                line=number,
                fix="give every word line the same columns (a word with a space inside needs tab separators)",
            )
        # Edge whitespace is never part of a word (`EU \tB-ORG` is the word "EU").
        token = fields[token_index].strip()
        if token == DOCSTART:
            continue
        if not token:
            raise DataError(
                "the word is empty or whitespace only",
                path=path,
                line=number,
                field="token_column",
                fix="remove the line, or check --token-column / the column separators",
            )
        tag = fields[tag_index].strip()
        if not tag:
            raise DataError(
                "empty tag", path=path, line=number, fix="give the word a tag ('O' outside entities)"
            )
        if not tokens:
            start_line = number
        tokens.append(token)
        tags.append(tag)
    close()
    return sentences


def write_conll(sentences: Iterable[Sentence], path: str | Path) -> None:
    """Write sentences as `word<TAB>tag` lines with a blank line after each sentence.

    The file is written to a temporary file beside `path` and moved into place, so an error never
    leaves a half-written file.

    Raises:
        DataError: A word or tag holds a tab or a line break (it cannot be stored in a column file),
            starts or ends with whitespace (the reader strips it), or is empty or whitespace only.
    """
    path = Path(path)
    parts: list[str] = []
    for sentence in sentences:
        for token, tag in zip(sentence.tokens, sentence.tags, strict=True):
            for name, value in (("token", token), ("tag", tag)):
                if any(c in value for c in "\t\n\r\x00") or not value.strip() or value != value.strip():
                    raise DataError(
                        f"{name} {value!r} cannot be written to a CoNLL file",
                        path=sentence.source or None,
                        fix="remove tabs, line breaks and edge whitespace from words and tags; drop empty words",
                    )
            parts.append(f"{token}\t{tag}\n")
        parts.append("\n")
    atomic_write_text(path, "".join(parts))
