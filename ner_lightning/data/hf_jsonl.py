"""Hugging Face-style JSON Lines: `{"tokens": [...], "ner_tags": [...]}` per line.

Tags may be strings (`"B-PER"`) or integer ids into a label list (the shape `datasets` exports).
The canonical split files of a dataset folder are this format with string IOB2 tags, so the
writer here is also the canonical writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from ner_lightning.contract import TAGS_FIELD, TOKENS_FIELD
from ner_lightning.data.sentence import Sentence
from ner_lightning.data.textfile import parse_json_object, text_lines
from ner_lightning.errors import DataError

# Line breaks for str.splitlines that json.dumps(ensure_ascii=False) leaves unescaped.
_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


def read_hf_jsonl(
    path: str | Path,
    *,
    label_names: Sequence[str] | None = None,
    tokens_field: str = TOKENS_FIELD,
    tags_field: str = TAGS_FIELD,
) -> list[Sentence]:
    """Read token/tag JSON Lines into sentences (tags as they are in the file).

    Args:
        path: The file; blank lines are skipped.
        label_names: Label list that integer tags index into (required when tags are ids).
        tokens_field: JSON field holding the words.
        tags_field: JSON field holding the tags.

    Returns:
        The sentences in file order.

    Raises:
        DataError: Malformed JSON, a missing or mistyped field, tokens and tags of different
            lengths, or a tag id without a label list or outside it.
    """
    path = Path(path)
    sentences: list[Sentence] = []
    for number, line in enumerate(text_lines(path), 1):
        if not line.strip():
            continue
        record = parse_json_object(
            line, path, number, shape=f'{{"{tokens_field}": [...], "{tags_field}": [...]}}'
        )
        for field in (tokens_field, tags_field):
            if field not in record:
                raise DataError(
                    f"missing field {field!r} (fields present: {', '.join(sorted(record)) or 'none'})",
                    path=path,
                    line=number,
                    field=field,
                    fix="add the field, or name the field the file uses with --tokens-field/--tags-field",
                )
            if not isinstance(record[field], list):
                raise DataError(
                    f"expected a list, found {type(record[field]).__name__}",
                    path=path,
                    line=number,
                    field=field,
                    fix="store words and tags as JSON arrays",
                )
        tokens, raw_tags = record[tokens_field], record[tags_field]
        if not all(isinstance(token, str) for token in tokens):
            raise DataError(
                "every word must be a string",
                path=path,
                line=number,
                field=tokens_field,
                fix="quote the words",
            )
        if len(tokens) != len(raw_tags):
            raise DataError(
                f"{len(tokens)} words but {len(raw_tags)} tags",
                path=path,
                line=number,
                field=tags_field,
                fix="give exactly one tag per word",
            )
        tags = [_tag_name(tag, label_names, path, number, tags_field) for tag in raw_tags]
        sentences.append(Sentence(tuple(tokens), tuple(tags), f"{path}:{number}"))
    return sentences


def _tag_name(tag: object, label_names: Sequence[str] | None, path: Path, line: int, field: str) -> str:
    if isinstance(tag, str):
        return tag
    if isinstance(tag, int) and not isinstance(tag, bool):
        if label_names is None:
            raise DataError(
                f"tag {tag} is an id but no label list was given",
                path=path,
                line=line,
                field=field,
                fix="pass the label list (--label-names labels.json) that the ids index into",
            )
        if not 0 <= tag < len(label_names):
            raise DataError(
                f"tag id {tag} is outside the label list of {len(label_names)} labels",
                path=path,
                line=line,
                field=field,
                fix="pass the label list the ids were made with",
            )
        return label_names[tag]
    raise DataError(
        f"tag {tag!r} is neither a string nor an integer id",
        path=path,
        line=line,
        field=field,
        fix="write tags as strings ('B-PER') or ids with a label list",
    )


def sentence_line(sentence: Sentence) -> str:
    """One canonical JSON line (no line end): unicode kept as is, key order fixed, no extra spaces.

    The characters that `str.splitlines` treats as line breaks (U+0085, U+2028, U+2029) are escaped
    so that any line-splitting reader sees one record per line.
    """
    text = json.dumps(
        {TOKENS_FIELD: list(sentence.tokens), TAGS_FIELD: list(sentence.tags)},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    for char in _LINE_BREAKS:
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def canonical_jsonl(sentences: Iterable[Sentence]) -> str:
    """The text of a canonical split file: one `sentence_line` per sentence, each ending in `\\n`."""
    return "".join(sentence_line(sentence) + "\n" for sentence in sentences)
