"""`ner-data convert`: user data in any accepted format -> a validated canonical dataset folder.

Reads the inputs, converts tags to IOB2, splits a single input by ratios if asked, writes the
split files, `labels.json`, the rejects file (span input), then validates the result and writes
`manifest.json` and `conversion_report.json`. Everything is written to a temporary folder beside
the output and moved into place at the end, so an error never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ner_lightning.contract import (
    LABELS_FILE,
    OUTSIDE_TAG,
    SPLIT_FILES,
    TEST_SPLIT,
    TRAIN_SPLIT,
    VALIDATION_SPLIT,
)
from ner_lightning.data.conll import read_conll
from ner_lightning.data.hf_jsonl import canonical_jsonl, read_hf_jsonl
from ner_lightning.data.manifest import build_manifest, file_sha256, manifest_text
from ner_lightning.data.schemes import SCHEMES, convert_scheme
from ner_lightning.data.sentence import Sentence
from ner_lightning.data.spans import DEFAULT_DROP_LABELS, SpanConversion, read_span_jsonl, rejects_jsonl
from ner_lightning.data.split import DEFAULT_SEED, split_items
from ner_lightning.data.validate import ValidationReport, validate_folder
from ner_lightning.errors import DataError
from ner_lightning.tags import split_tag

#: Input formats of `ner-data convert --format`.
FORMATS: Final = ("conll", "hf-jsonl", "spans")
#: Report written into the converted folder: conversion counts and the validation report.
REPORT_FILE: Final = "conversion_report.json"
#: Spans that could not be mapped to tags (span input only), one JSON object per line.
REJECTS_FILE: Final = "rejects.jsonl"
#: Longest file or folder name most file systems accept, in bytes.
_NAME_MAX: Final = 255
#: Files that mark a folder as a dataset folder `--overwrite` may replace.
_DATASET_MARKERS: Final = ("manifest.json", SPLIT_FILES[TRAIN_SPLIT])


@dataclass(frozen=True)
class ConvertOptions:
    """How to read and convert the input; recorded in the manifest's source description.

    Args:
        format: One of `FORMATS`.
        scheme: Tag scheme of token-tagged input (`iob2`, `iob1`, `bioes`, `bilou`).
        repair_iob2: Repair ill-formed tag sequences instead of failing (`--repair`): an orphan
            `I-X` in IOB2 becomes `B-X`; in BIOES/BILOU every tag that cannot continue the open
            entity opens a new one (see `schemes.lenient_iob2`). The name predates BIOES checks.
        tag_column: CoNLL column of the tag (-1: last; 0: label-first files).
        token_column: CoNLL column of the word (default: first column that is not the tag).
        label_names: Label list that integer tag ids of HF JSONL index into.
        tokens_field: HF JSONL field of the words.
        tags_field: HF JSONL field of the tags.
        overlap: Span overlap rule (`longest`, `first`, `drop`).
        segment: Example unit for span documents (`line`, `paragraph`, `document`).
        max_words: Longest example cut from a span document.
        allowed_labels: Span labels to keep (others are rejected); None keeps all.
        drop_labels: Span labels rejected as unknown.
        end_inclusive: Whether span ends are inclusive (None: by record shape).
        ratios: Split ratios (train, validation[, test]) used when no validation input is given.
        seed: Split seed.
    """

    format: str = "conll"
    scheme: str = "iob2"
    repair_iob2: bool = False
    tag_column: int = -1
    token_column: int | None = None
    label_names: tuple[str, ...] | None = None
    tokens_field: str = "tokens"
    tags_field: str = "ner_tags"
    overlap: str = "longest"
    segment: str = "line"
    max_words: int = 128
    allowed_labels: tuple[str, ...] | None = None
    drop_labels: tuple[str, ...] = DEFAULT_DROP_LABELS
    end_inclusive: bool | None = None
    ratios: tuple[float, ...] | None = None
    seed: int = DEFAULT_SEED


@dataclass
class ConversionResult:
    """What `convert` wrote.

    Args:
        folder: The dataset folder.
        report: The conversion report (also in `conversion_report.json`).
        validation: The validation report of the written folder.
        spans: The span conversion (span input only), with kept and rejected spans.
    """

    folder: Path
    report: dict[str, Any]
    validation: ValidationReport
    spans: SpanConversion | None = None


def convert(
    inputs: Mapping[str, str | Path],
    output: str | Path,
    options: ConvertOptions | None = None,
    *,
    overwrite: bool = False,
) -> ConversionResult:
    """Convert input files into a canonical dataset folder.

    Args:
        inputs: Split name (`train`, `validation`, `test`) -> input file. Without `validation`,
            the `train` input is split by `options.ratios` (default 0.8/0.1/0.1, or 0.9/0.1 when a
            `test` input is given).
        output: The dataset folder to create.
        options: Format and conversion options (default: IOB2 CoNLL).
        overwrite: Replace an existing output folder (only once the new one is complete).

    Returns:
        The folder and its reports.

    Raises:
        DataError: Bad input or options, or the converted data fails validation. Nothing is
            written in that case.
    """
    output = check_output_location(output, inputs.values(), overwrite=overwrite)
    options = options or ConvertOptions()
    _check_options(inputs, options)
    read: dict[str, list[Sentence]] = {}
    spans = SpanConversion() if options.format == "spans" else None
    repaired = 0
    for split, path in inputs.items():
        sentences, conversion, fixed = _read_input(
            Path(path), options, first_document=spans.documents if spans else 0
        )
        read[split] = sentences
        repaired += fixed
        if spans is not None and conversion is not None:
            # Kept-span sentence indices are relative to the concatenation in `inputs` order.
            spans.extend(conversion)
    splits = _assign_splits(read, options)
    labels = _labels(splits)

    created = [folder for folder in (output.parent, *output.parent.parents) if not folder.exists()]
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        temp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    except BaseException:
        _remove_empty(created)
        raise
    try:
        temp.chmod(0o755)  # mkdtemp makes it private; the dataset folder is meant to be shared
        for split, sentences in splits.items():
            (temp / SPLIT_FILES[split]).write_text(canonical_jsonl(sentences), encoding="utf-8", newline="\n")
        (temp / LABELS_FILE).write_text(
            json.dumps(labels, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        if spans is not None:
            (temp / REJECTS_FILE).write_text(rejects_jsonl(spans.rejected), encoding="utf-8", newline="\n")
        validation = validate_folder(temp)
        if not validation.ok:
            shown = "; ".join(str(issue) for issue in validation.errors[:5])
            raise DataError(
                f"converted data fails validation ({len(validation.errors)} error(s) listed): {shown}",
                path=output,
                fix="fix the input (or pass --repair for ill-formed tags) and convert again",
            )
        source = {
            "format": options.format,
            "inputs": [
                {"split": split, "name": Path(path).name, "sha256": file_sha256(path)}
                for split, path in sorted(inputs.items())
            ],
            "options": {
                k: list(v) if isinstance(v, tuple) else v for k, v in sorted(asdict(options).items())
            },
        }
        split_stats = {name: stats.to_dict() for name, stats in validation.splits.items()}
        manifest = build_manifest(temp, labels=labels, splits=split_stats, source=source)
        report = {
            "fingerprint": manifest["fingerprint"],
            "format": options.format,
            "repaired_iob2_tags": repaired,
            "splits": split_stats,
            "spans": spans.report() if spans is not None else None,
            "validation": validation.to_dict(),
        }
        (temp / "manifest.json").write_text(manifest_text(manifest), encoding="utf-8", newline="\n")
        (temp / REPORT_FILE).write_text(
            json.dumps(report, ensure_ascii=False, sort_keys=True, indent=2) + "\n",
            encoding="utf-8",
            newline="\n",
        )
        _move_into_place(temp, output)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        _remove_empty(created)
        raise
    return ConversionResult(output, report, validation, spans)


def check_output_location(output: str | Path, inputs: Collection[str | Path], *, overwrite: bool) -> Path:
    """Refuse an output folder whose writing or replacing would destroy an input or the user's files.

    The output may not be an input, contain an input (`--output raw` for `raw/train.conll`), lie
    inside one, or be the current folder or one of its parents. An existing output is refused
    without `overwrite`; with it, only a dataset folder (one holding `manifest.json` or
    `train.jsonl`) or an empty folder is replaced, never a file or another folder.

    Args:
        output: The dataset folder to create.
        inputs: The input files.
        overwrite: Whether an existing dataset folder may be replaced.

    Returns:
        The output path to use (`.`/`..` spelled out as an absolute path).

    Raises:
        DataError: The output is one of the cases above.
    """
    if not isinstance(output, (str, os.PathLike)):
        # argparse turns `--output=--` into an empty list.
        raise DataError(
            f"the output path {output!r} is not a folder name",
            field="output",
            fix="name the dataset folder to create, e.g. --output data/v1",
        )
    for name, path in (("output", output), *(("input", given) for given in inputs)):
        if "\x00" in str(path):
            raise DataError(
                f"the {name} path contains a NUL character", path=repr(str(path)), field=name, fix="remove it"
            )
    output = Path(output)
    if output.name in ("", ".", "..") or ".." in output.parts:
        # Spelled out, so that `a/../x` neither creates `a` nor means something else after a rename.
        output = output.resolve()
    too_long = [part for part in output.parts if len(os.fsencode(part)) > _NAME_MAX]
    if too_long:
        raise DataError(
            f"a folder name in the output path is longer than {_NAME_MAX} bytes ({too_long[0][:40]!r}...)",
            path=output,
            field="output",
            fix="choose a shorter name",
        )
    target = output.resolve()
    keep = "choose an output folder apart from the inputs, e.g. data/<name>"
    for given in inputs:
        source = Path(given).resolve()
        if source == target:
            problem = "is the input file"
        elif source.is_relative_to(target):
            problem = "contains the input file"
        elif target.is_relative_to(source):
            problem = "lies inside the input"
        else:
            continue
        raise DataError(
            f"the output {problem} {given}; writing it would destroy the input",
            path=output,
            field="output",
            fix=keep,
        )
    if Path.cwd().resolve().is_relative_to(target):
        raise DataError(
            "the output folder is the current folder or one of its parents; replacing it would delete it",
            path=output,
            field="output",
            fix=keep,
        )
    if not output.exists() and not output.is_symlink():
        return output
    if not overwrite:
        raise DataError(
            "output folder already exists", path=output, fix="pass --overwrite or choose a new folder"
        )
    if not output.is_dir():
        raise DataError(
            "the output exists and is a file, not a dataset folder; --overwrite replaces dataset folders only",
            path=output,
            field="output",
            fix="choose a new folder, or move the file away",
        )
    if any(output.iterdir()) and not any((output / name).is_file() for name in _DATASET_MARKERS):
        raise DataError(
            f"the output folder exists and is not a dataset folder (no {' or '.join(_DATASET_MARKERS)}); "
            "--overwrite replaces dataset folders only",
            path=output,
            field="output",
            fix="choose a new folder, or empty this one yourself if its files may go",
        )
    return output


def _check_options(inputs: Mapping[str, str | Path], options: ConvertOptions) -> None:
    if options.format not in FORMATS:
        raise DataError(
            f"unknown format {options.format!r}", field="format", fix=f"use one of {', '.join(FORMATS)}"
        )
    if options.scheme not in SCHEMES:
        raise DataError(
            f"unknown tag scheme {options.scheme!r}", field="scheme", fix=f"use one of {', '.join(SCHEMES)}"
        )
    unknown = sorted(set(inputs) - set(SPLIT_FILES))
    if unknown:
        raise DataError(f"unknown split(s) {unknown}", field="inputs", fix=f"use {', '.join(SPLIT_FILES)}")
    if TRAIN_SPLIT not in inputs:
        raise DataError(
            "no training input",
            field="train",
            fix="pass --train <file> (or --input <file> to split one file)",
        )
    if VALIDATION_SPLIT in inputs and options.ratios is not None:
        raise DataError(
            "--ratios splits the train input but a validation input is given too",
            field="ratios",
            fix="drop --ratios, or drop --validation to carve it from the train input",
        )


def _read_input(
    path: Path, options: ConvertOptions, first_document: int
) -> tuple[list[Sentence], SpanConversion | None, int]:
    if options.format == "spans":
        conversion = read_span_jsonl(
            path,
            overlap=options.overlap,
            segment=options.segment,
            max_words=options.max_words,
            allowed_labels=options.allowed_labels,
            drop_labels=options.drop_labels,
            end_inclusive=options.end_inclusive,
            first_document=first_document,
        )
        return conversion.sentences, conversion, 0
    if options.format == "conll":
        raw = read_conll(path, tag_column=options.tag_column, token_column=options.token_column)
    else:
        raw = read_hf_jsonl(
            path,
            label_names=options.label_names,
            tokens_field=options.tokens_field,
            tags_field=options.tags_field,
        )
    if not raw:
        raise DataError(
            "input has no sentences", path=path, fix="pass a file with at least one tagged sentence"
        )
    sentences, repaired = [], 0
    for sentence in raw:
        where, _, line = sentence.source.rpartition(":")
        if not sentence.tokens:
            raise DataError("sentence has zero words", path=where, line=int(line), fix="remove the line")
        blank = [i + 1 for i, token in enumerate(sentence.tokens) if not token.strip()]
        if blank:
            raise DataError(
                f"word(s) {blank[:5]} are empty or whitespace only",
                path=where,
                line=int(line),
                field=options.tokens_field if options.format == "hf-jsonl" else None,
                fix="remove empty words and their tags",
            )
        tags, fixed = convert_scheme(
            sentence.tags, options.scheme, path=where, line=int(line), repair=options.repair_iob2
        )
        repaired += fixed
        sentences.append(Sentence(sentence.tokens, tuple(tags), sentence.source, sentence.document))
    return sentences, None, repaired


def _assign_splits(read: dict[str, list[Sentence]], options: ConvertOptions) -> dict[str, list[Sentence]]:
    if VALIDATION_SPLIT in read:
        splits = dict(read)
    else:
        ratios: Sequence[float] = options.ratios or ((0.9, 0.1) if TEST_SPLIT in read else (0.8, 0.1, 0.1))
        if TEST_SPLIT in read and len(ratios) == 3 and ratios[2] > 0:
            raise DataError(
                "a test input is given and the ratios ask for a test split too",
                field="ratios",
                fix="pass two ratios (train validation), or drop --test",
            )
        train = read[TRAIN_SPLIT]
        groups = [s.document if s.document is not None else f"sentence {i}" for i, s in enumerate(train)]
        splits = split_items(train, groups, ratios, options.seed)
        if TEST_SPLIT in read:
            splits[TEST_SPLIT] = read[TEST_SPLIT]
    return {split: splits[split] for split in SPLIT_FILES if split in splits}


def _labels(splits: Mapping[str, list[Sentence]]) -> list[str]:
    """`O`, then `B-` and `I-` of every entity type found, sorted (so both exist for every type)."""
    types = {split_tag(t)[1] for ss in splits.values() for s in ss for t in s.tags if t != OUTSIDE_TAG}
    return [OUTSIDE_TAG, *sorted({f"{prefix}-{t}" for t in types for prefix in "BI"})]


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this conversion created (deepest first) when it fails, if still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _move_into_place(temp: Path, output: Path) -> None:
    """Rename the finished temp folder to `output`, replacing an old one only after the move succeeded."""
    if not output.exists():
        os.replace(temp, output)
        return
    old = output.with_name(f".{output.name}.old-{os.getpid()}")
    os.replace(output, old)
    try:
        os.replace(temp, output)
    except BaseException:
        os.replace(old, output)
        raise
    shutil.rmtree(old, ignore_errors=True)
