"""Canonical dataset-folder reader: `train.jsonl`, `validation.jsonl`, optional `test.jsonl`, `labels.json`.

This is the one place that decides whether a dataset folder is readable. Training (the data
module), ingestion (validation, manifests) and the launcher all read folders through it, so it is
pure Python: no torch, no transformers.

Each line of a split file is a JSON object `{"tokens": [...], "ner_tags": [...]}` with string
IOB2 tags (extra keys are allowed and ignored). Every problem is reported as a `DataError` that
names the file, the 1-based line and the field. Nothing is dropped silently: the only lines that
carry no example are blank ones, which hold no data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ner_lightning.contract import (
    LABELS_FILE,
    OPTIONAL_SPLITS,
    OUTSIDE_TAG,
    REQUIRED_SPLITS,
    SPLIT_FILES,
    TAGS_FIELD,
    TOKENS_FIELD,
)
from ner_lightning.data.textfile import parse_json_object
from ner_lightning.errors import DataError
from ner_lightning.tags import split_tag


@dataclass(frozen=True)
class Example:
    """One sentence of a split file.

    Args:
        tokens: The words of the sentence.
        tags: One IOB2 tag per word.
        path: The file the example was read from.
        line: Its 1-based line number in that file.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    path: str = ""
    line: int = 0


@dataclass(frozen=True)
class DatasetFolder:
    """A dataset folder read into memory.

    Args:
        path: The folder.
        splits: Split name (`train`, `validation`, optionally `test`) -> its examples, in file order.
        labels: Ordered label list (`O` first): from `labels.json`, else derived from all splits.
        labels_from_file: Whether `labels` came from `labels.json`.
    """

    path: Path
    splits: Mapping[str, list[Example]]
    labels: list[str]
    labels_from_file: bool = field(default=False)


def read_labels(folder: str | Path) -> list[str] | None:
    """Read `labels.json` from a dataset (or model) folder.

    Args:
        folder: The folder that may hold `labels.json`.

    Returns:
        The ordered label list, or None when the folder has no `labels.json`.

    Raises:
        DataError: The file is not UTF-8 JSON, not a list of unique IOB2 strings, or `O` is not first.
    """
    path = Path(folder) / LABELS_FILE
    if not path.is_file():
        return None
    fix = f'write {LABELS_FILE} as a JSON array of unique IOB2 labels with "O" first, e.g. ["O", "B-PER", "I-PER"]'
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(f"not UTF-8 ({error.reason} at byte {error.start})", path=path, fix=fix) from error
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON: {error.msg}", path=path, line=error.lineno, fix=fix) from error
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise DataError("expected a JSON array of strings", path=path, fix=fix)
    problem = label_list_problem(labels)
    if problem is not None:
        raise DataError(problem, path=path, fix=fix)
    return labels


def label_list_problem(labels: Sequence[str]) -> str | None:
    """What is wrong with a label list (`O` not first, a label twice, a label not IOB2), or None.

    The dataset reader and the model (`ner_lightning.validation`) apply the same rule.
    """
    if not labels or labels[0] != OUTSIDE_TAG:
        where = (
            "missing" if OUTSIDE_TAG not in labels else f"at position {list(labels).index(OUTSIDE_TAG) + 1}"
        )
        return f'the first label must be "{OUTSIDE_TAG}" (it is {where})'
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            return f"label {label!r} is listed twice"
        seen.add(label)
        try:
            split_tag(label)
        except ValueError as error:
            return str(error)
    return None


def derive_labels(examples: Iterable[Example]) -> list[str]:
    """Derive the label list from the tags in use.

    The order is `O`, then for each entity type in sorted order `B-<type>`, `I-<type>`. Every type
    gets both tags even if only one occurs, so that a model can predict a continuation (`I-`) of an
    entity seen only as single words in training.

    Args:
        examples: Examples of any number of splits.

    Returns:
        The ordered label list.
    """
    types = {split_tag(tag)[1] for example in examples for tag in example.tags if tag != OUTSIDE_TAG}
    labels = [OUTSIDE_TAG]
    for entity_type in sorted(types):
        labels += [f"B-{entity_type}", f"I-{entity_type}"]
    return labels


def read_split(path: str | Path, labels: Sequence[str] | None = None) -> list[Example]:
    """Read one split file (JSON Lines).

    Args:
        path: The `.jsonl` file.
        labels: If given, every tag must be one of these (the folder's `labels.json`); otherwise
            every tag must merely be valid IOB2 syntax (`O`, `B-X`, `I-X`).

    Returns:
        The examples in file order. Blank lines are skipped (they hold no data).

    Raises:
        DataError: The file is missing, not UTF-8, holds no example, or a line is malformed: not a
            JSON object, a missing or wrong-typed field, zero tokens, an empty token, `tokens` and
            `ner_tags` of different lengths, or a tag outside `labels`. The error names the line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("split file does not exist", path=path, fix="create it or point at the right folder")
    allowed = set(labels) if labels is not None else None
    examples: list[Example] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"not UTF-8 ({error.reason} at byte {error.start} of the line)",
                    path=path,
                    line=number,
                    fix="re-encode the file as UTF-8",
                ) from error
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not text.strip():
                continue
            examples.append(_parse_line(text, path, number, allowed))
    if not examples:
        raise DataError(
            "split file holds no examples",
            path=path,
            fix=f'add one JSON object per line: {{"{TOKENS_FIELD}": [...], "{TAGS_FIELD}": [...]}}',
        )
    return examples


def _parse_line(text: str, path: Path, number: int, allowed: set[str] | None) -> Example:
    """Parse and check one non-blank line of a split file."""
    shape = f'{{"{TOKENS_FIELD}": ["EU", ...], "{TAGS_FIELD}": ["B-ORG", ...]}}'
    line_fix = f"each line must be a JSON object {shape}"
    record = parse_json_object(text, path, number, shape=shape)
    columns = {}
    for name in (TOKENS_FIELD, TAGS_FIELD):
        if name not in record:
            raise DataError("field is missing", path=path, line=number, field=name, fix=line_fix)
        value = record[name]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise DataError(
                "expected a JSON array of strings", path=path, line=number, field=name, fix=line_fix
            )
        columns[name] = tuple(value)
    tokens, tags = columns[TOKENS_FIELD], columns[TAGS_FIELD]
    if not tokens:
        raise DataError(
            "sentence has zero tokens",
            path=path,
            line=number,
            field=TOKENS_FIELD,
            fix="remove the line or add its words",
        )
    if len(tokens) != len(tags):
        raise DataError(
            f"{len(tokens)} tokens but {len(tags)} tags",
            path=path,
            line=number,
            field=TAGS_FIELD,
            fix="give exactly one tag per token",
        )
    for position, token in enumerate(tokens):
        if not token.strip():
            raise DataError(
                f"token {position} is empty or only whitespace ({token!r}); a tokenizer turns it into nothing",
                path=path,
                line=number,
                field=TOKENS_FIELD,
                fix="remove the token (and its tag) or replace it with a visible character",
            )
    for position, tag in enumerate(tags):
        if allowed is not None:
            if tag not in allowed:
                raise DataError(
                    f"tag {tag!r} (word {position}) is not in {LABELS_FILE}",
                    path=path,
                    line=number,
                    field=TAGS_FIELD,
                    fix=f"add it to {LABELS_FILE} or correct the tag",
                )
            continue
        try:
            split_tag(tag)
        except ValueError as error:
            raise DataError(
                f"word {position}: {error}", path=path, line=number, field=TAGS_FIELD, fix="use IOB2 tags"
            ) from error
    return Example(tokens=tokens, tags=tags, path=str(path), line=number)


def load_dataset_folder(folder: str | Path) -> DatasetFolder:
    """Read a whole dataset folder: required and present optional splits, and the label list.

    Args:
        folder: A folder with `train.jsonl`, `validation.jsonl`, optionally `test.jsonl` and
            `labels.json`.

    Returns:
        The folder's splits and labels (from `labels.json`, else derived from all splits with
        `derive_labels`).

    Raises:
        DataError: The folder or a required split is missing, or any file is malformed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            "dataset folder does not exist",
            path=folder,
            fix="pass --data.data_dir <folder holding train.jsonl and validation.jsonl>",
        )
    for split in REQUIRED_SPLITS:
        if not (folder / SPLIT_FILES[split]).is_file():
            raise DataError(
                f"required split {split!r} is missing ({SPLIT_FILES[split]})",
                path=folder / SPLIT_FILES[split],
                fix=f"a dataset folder needs {' and '.join(SPLIT_FILES[s] for s in REQUIRED_SPLITS)}; "
                "create it with `ner-data convert`",
            )
    labels = read_labels(folder)
    splits: dict[str, list[Example]] = {}
    for split in (*REQUIRED_SPLITS, *OPTIONAL_SPLITS):
        path = folder / SPLIT_FILES[split]
        if split in REQUIRED_SPLITS or path.is_file():
            splits[split] = read_split(path, labels)
    if labels is None:
        return DatasetFolder(
            folder, splits, derive_labels(e for examples in splits.values() for e in examples), False
        )
    return DatasetFolder(folder, splits, labels, True)
