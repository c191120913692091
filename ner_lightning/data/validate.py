"""Validation report of a canonical dataset folder (step P1-3.2: presence, readability, alignment).

Unlike the reader, which stops at the first problem, the validator reads every split tolerantly
and collects every problem, each with its file, line and fix, as an error (the folder cannot be
trained on) or a warning (it can, but look). Pure Python (no torch): the launcher runs it on a
source folder before registering a data asset.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ner_lightning.contract import (
    LABELS_FILE,
    OUTSIDE_TAG,
    REQUIRED_SPLITS,
    SPLIT_FILES,
    TAGS_FIELD,
    TOKENS_FIELD,
)
from ner_lightning.data.hf_jsonl import canonical_jsonl
from ner_lightning.data.manifest import manifest_mismatches, read_manifest, refresh_manifest
from ner_lightning.data.schemes import iob2_violations, repair_iob2
from ner_lightning.data.sentence import Sentence
from ner_lightning.data.textfile import atomic_write_text, read_text
from ner_lightning.errors import DataError
from ner_lightning.tags import extract_entities, split_tag

#: Version of the JSON report layout.
REPORT_SCHEMA_VERSION: Final = 1
#: Problems of one kind listed per file in the report (the rest are counted).
MAX_LISTED: Final = 20
#: Sentences longer than this are reported (they are windowed at training time, slowly).
LONG_SENTENCE_WORDS: Final = 512
ERROR: Final = "error"
WARNING: Final = "warning"


@dataclass(frozen=True)
class Issue:
    """One problem found in a dataset folder.

    Args:
        level: `error` or `warning`.
        code: Stable identifier of the kind of problem (e.g. `length_mismatch`).
        message: What is wrong.
        file: File name inside the folder, if any.
        line: 1-based line in that file, if any.
        fix: What to do about it.
    """

    level: str
    code: str
    message: str
    file: str | None = None
    line: int | None = None
    fix: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "") + ": " if self.file else ""
        return f"{self.level}: {where}{self.message}" + (f" Fix: {self.fix}" if self.fix else "")


@dataclass
class SplitStats:
    """Counts of one split.

    Args:
        file: File name of the split.
        sentences: Sentences read.
        tokens: Words read.
        entities: Entities per type (conlleval reading: an orphan `I-X` opens an entity).
    """

    file: str
    sentences: int = 0
    tokens: int = 0
    entities: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, entity types sorted."""
        return {
            "file": self.file,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "entities": sum(self.entities.values()),
            "entities_by_type": dict(sorted(self.entities.items())),
        }


@dataclass
class ValidationReport:
    """Everything `validate_folder` found.

    Args:
        issues: Errors and warnings, in the order found.
        splits: Counts per split that could be read.
        labels: The label list (from `labels.json`, else derived from the splits).
        counts: Number of problems per code (the issues list shows at most MAX_LISTED per file).
        repaired: Tags repaired per split file (with `repair_iob2`).
    """

    issues: list[Issue] = field(default_factory=list)
    splits: dict[str, SplitStats] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    repaired: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        """The problems that make the folder unusable."""
        return [issue for issue in self.issues if issue.level == ERROR]

    @property
    def warnings(self) -> list[Issue]:
        """The problems worth a look."""
        return [issue for issue in self.issues if issue.level == WARNING]

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable report (no absolute paths, so it is stable across machines)."""
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "ok": self.ok,
            "errors": [asdict(issue) for issue in self.errors],
            "warnings": [asdict(issue) for issue in self.warnings],
            "problem_counts": dict(sorted(self.counts.items())),
            "splits": {name: stats.to_dict() for name, stats in self.splits.items()},
            "labels": self.labels,
            "repaired_tags": dict(sorted(self.repaired.items())),
        }

    def to_json(self) -> str:
        """`to_dict` as byte-stable JSON text."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, indent=2) + "\n"

    def summary_table(self) -> str:
        """Sentences, tokens and entities per type (rows) for each split (columns)."""
        names = list(self.splits)
        types = sorted({t for stats in self.splits.values() for t in stats.entities})
        rows: list[tuple[str, list[int]]] = [
            ("sentences", [self.splits[n].sentences for n in names]),
            ("tokens", [self.splits[n].tokens for n in names]),
            ("entities", [sum(self.splits[n].entities.values()) for n in names]),
            *((f"  {t}", [self.splits[n].entities[t] for n in names]) for t in types),
        ]
        first = max([len(r[0]) for r in rows] + [5])
        widths = [max(len(n), *(len(str(r[1][i])) for r in rows)) for i, n in enumerate(names)]
        lines = ["".ljust(first) + "".join("  " + n.rjust(w) for n, w in zip(names, widths, strict=True))]
        for label, values in rows:
            lines.append(
                label.ljust(first)
                + "".join("  " + str(v).rjust(w) for v, w in zip(values, widths, strict=True))
            )
        return "\n".join(lines)

    def format_text(self) -> str:
        """Human-readable report: table, then errors and warnings, then a verdict."""
        parts = [self.summary_table(), ""] if self.splits else []
        parts += [str(issue) for issue in self.issues]
        hidden = sum(self.counts.values()) - len(self.issues)
        if hidden > 0:
            parts.append(f"... and {hidden} more problem(s) of the same kinds (see problem_counts in --json)")
        verdict = "OK" if self.ok else "FAILED"
        parts.append(
            f"{verdict}: {len(self.errors)} error kind(s) listed, {len(self.warnings)} warning(s) listed"
        )
        return "\n".join(parts)


class _Collector:
    """Adds issues to a report, listing at most MAX_LISTED per (code, file) and counting all.

    Args:
        report: The report to fill.
    """

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        self._listed: Counter[tuple[str, str | None]] = Counter()

    def add(
        self,
        level: str,
        code: str,
        message: str,
        file: str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.report.counts[code] += 1
        key = (code, file)
        self._listed[key] += 1
        if self._listed[key] <= MAX_LISTED:
            self.report.issues.append(Issue(level, code, message, file, line, fix))


def validate_folder(folder: str | Path, *, repair_iob2: bool = False) -> ValidationReport:
    """Check a canonical dataset folder and collect every problem.

    Checks: required split files present; every file readable UTF-8; every line a JSON object
    with `tokens` and `ner_tags` lists of strings of equal, non-zero length; no empty or
    whitespace-only word; tags valid IOB2 and listed in `labels.json`; no `I-X` without an opening
    `B-X`/`I-X` (an error, or with `repair_iob2` repaired in place into `B-X` and reported as a
    warning); no empty split; sentences shared between splits (leakage warning); entity types
    present in one split but not another (warning); `manifest.json`, when present, matching the files.

    Args:
        folder: The dataset folder.
        repair_iob2: Rewrite split files with orphan `I-X` tags turned into `B-X` (atomically,
            refreshing `manifest.json` if there is one) instead of reporting them as errors.

    Returns:
        The report; `report.ok` is False when there is an error.
    """
    folder = Path(folder)
    report = ValidationReport()
    collect = _Collector(report)
    if not folder.is_dir():
        collect.add(
            ERROR,
            "missing_folder",
            f"dataset folder {folder} does not exist",
            fix="pass the folder holding train.jsonl",
        )
        return report
    labels = _read_labels(folder, collect)
    label_set = set(labels) if labels is not None else None
    sentences_by_split: dict[str, list[Sentence]] = {}
    for split, name in SPLIT_FILES.items():
        path = folder / name
        if not path.is_file():
            if split in REQUIRED_SPLITS:
                collect.add(
                    ERROR,
                    "missing_split",
                    "required split file is missing",
                    name,
                    fix="add the file or run `ner-data convert`/`ner-data split`",
                )
            continue
        sentences = _read_split(path, collect, label_set, repair_iob2, report)
        if sentences is None:
            continue
        sentences_by_split[split] = sentences
        stats = SplitStats(name, len(sentences), sum(len(s.tokens) for s in sentences))
        for sentence in sentences:
            stats.entities.update(entity.type for entity in extract_entities(sentence.tags))
        report.splits[split] = stats
        if not sentences:
            collect.add(
                ERROR,
                "empty_split",
                "split has no sentences",
                name,
                fix="add sentences or drop the file (test only)",
            )
        if report.repaired.get(name):
            atomic_write_text(path, canonical_jsonl(sentences))
    if any(report.repaired.values()):
        refresh_manifest(folder)
    _cross_split_checks(sentences_by_split, collect)
    if labels is None:
        tags = {t for ss in sentences_by_split.values() for s in ss for t in s.tags}
        labels = [OUTSIDE_TAG, *sorted(t for t in tags if t != OUTSIDE_TAG and _is_iob2(t))]
    else:
        used = {t for ss in sentences_by_split.values() for s in ss for t in s.tags}
        types_used = {split_tag(t)[1] for t in used if _is_iob2(t) and t != OUTSIDE_TAG}
        unused = sorted({split_tag(t)[1] for t in labels if _is_iob2(t) and t != OUTSIDE_TAG} - types_used)
        if unused:
            collect.add(
                WARNING,
                "unused_label",
                f"entity type(s) in labels.json never used: {', '.join(unused)}",
                LABELS_FILE,
                fix="drop them from labels.json unless the model should know them",
            )
    report.labels = labels
    _check_manifest(folder, collect)
    return report


def _is_iob2(tag: str) -> bool:
    try:
        split_tag(tag)
    except ValueError:
        return False
    return True


def _read_labels(folder: Path, collect: _Collector) -> list[str] | None:
    path = folder / LABELS_FILE
    if not path.is_file():
        return None
    fix = 'write a JSON array of tag strings with "O" first, e.g. ["O", "B-PER", "I-PER"]'
    try:
        labels = json.loads(read_text(path))
    except DataError as error:
        collect.add(ERROR, "unreadable_file", error.message, LABELS_FILE, error.line, error.fix)
        return None
    except json.JSONDecodeError as error:
        collect.add(ERROR, "bad_labels_file", f"malformed JSON: {error.msg}", LABELS_FILE, error.lineno, fix)
        return None
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        collect.add(ERROR, "bad_labels_file", "labels.json is not a list of strings", LABELS_FILE, fix=fix)
        return None
    problems = []
    if not labels or labels[0] != OUTSIDE_TAG:
        problems.append('"O" is not the first label')
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        problems.append(f"duplicate label(s) {duplicates}")
    invalid = [label for label in labels if not _is_iob2(label)]
    if invalid:
        problems.append(f"label(s) {invalid[:5]} are not IOB2")
    for problem in problems:
        collect.add(ERROR, "bad_labels_file", problem, LABELS_FILE, fix=fix)
    return labels


def _read_split(
    path: Path, collect: _Collector, labels: set[str] | None, repair: bool, report: ValidationReport
) -> list[Sentence] | None:
    name = path.name
    try:
        text = read_text(path)
    except DataError as error:
        collect.add(ERROR, "unreadable_file", error.message, name, error.line, error.fix)
        return None
    sentences: list[Sentence] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            collect.add(WARNING, "blank_line", "blank line (skipped)", name, number, fix="remove blank lines")
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            collect.add(
                ERROR,
                "malformed_json",
                f"malformed JSON: {error.msg} (column {error.colno})",
                name,
                number,
                "write one complete JSON object per line",
            )
            continue
        if not isinstance(record, dict):
            collect.add(
                ERROR,
                "not_object",
                f"expected a JSON object, found {type(record).__name__}",
                name,
                number,
                f'write {{"{TOKENS_FIELD}": [...], "{TAGS_FIELD}": [...]}}',
            )
            continue
        missing = [f for f in (TOKENS_FIELD, TAGS_FIELD) if f not in record]
        if missing:
            collect.add(
                ERROR,
                "missing_field",
                f"missing field(s) {missing}",
                name,
                number,
                f"every line needs {TOKENS_FIELD!r} and {TAGS_FIELD!r}",
            )
            continue
        tokens, tags = record[TOKENS_FIELD], record[TAGS_FIELD]
        if (
            not isinstance(tokens, list)
            or not isinstance(tags, list)
            or not all(isinstance(x, str) for x in [*tokens, *tags])
        ):
            collect.add(
                ERROR,
                "wrong_type",
                "tokens and ner_tags must be lists of strings",
                name,
                number,
                "store words and string tags as JSON arrays (convert tag ids with `ner-data convert --format hf-jsonl --label-names`)",
            )
            continue
        if len(tokens) != len(tags):
            collect.add(
                ERROR,
                "length_mismatch",
                f"{len(tokens)} words but {len(tags)} tags",
                name,
                number,
                "give exactly one tag per word",
            )
            continue
        if not tokens:
            collect.add(ERROR, "empty_sentence", "sentence has zero words", name, number, "remove the line")
            continue
        empty = [i + 1 for i, token in enumerate(tokens) if not token.strip()]
        if empty:
            collect.add(
                ERROR,
                "empty_token",
                f"word(s) {empty[:5]} are empty or whitespace only",
                name,
                number,
                "remove empty words (and their tags)",
            )
        invalid = [tag for tag in tags if not _is_iob2(tag)]
        if invalid:
            collect.add(
                ERROR,
                "invalid_tag",
                f"tag(s) {sorted(set(invalid))[:5]} are not IOB2",
                name,
                number,
                "use 'O', 'B-<type>', 'I-<type>'; convert other schemes with `ner-data convert --scheme`",
            )
            continue
        if labels is not None:
            unknown = sorted(set(tags) - labels)
            if unknown:
                collect.add(
                    ERROR,
                    "tag_not_in_labels",
                    f"tag(s) {unknown[:5]} are not in labels.json",
                    name,
                    number,
                    "add them to labels.json or fix the tags",
                )
        orphans = iob2_violations(tags)
        if orphans:
            if repair:
                tags, changed = repair_iob2(tags)
                report.repaired[name] = report.repaired.get(name, 0) + changed
                collect.add(
                    WARNING, "iob2_repaired", f"{changed} orphan I- tag(s) turned into B-", name, number
                )
            else:
                first = orphans[0]
                collect.add(
                    ERROR,
                    "iob2_orphan_i",
                    f"word {first + 1} {tokens[first]!r} has tag {tags[first]!r} with no opening B- tag ({len(orphans)} in this sentence)",
                    name,
                    number,
                    "fix the tag, or run `ner-data validate --repair-iob2` to turn each orphan I-X into B-X",
                )
        if len(tokens) > LONG_SENTENCE_WORDS:
            collect.add(
                WARNING,
                "long_sentence",
                f"{len(tokens)} words (windowed at training time)",
                name,
                number,
                "split long documents into sentences if they are not",
            )
        sentences.append(Sentence(tuple(tokens), tuple(tags), f"{name}:{number}"))
    return sentences


def _cross_split_checks(sentences_by_split: dict[str, list[Sentence]], collect: _Collector) -> None:
    first_seen: dict[tuple[str, ...], str] = {}
    shared: dict[tuple[str, str], list[str]] = defaultdict(list)
    for split, sentences in sentences_by_split.items():
        seen_here: set[tuple[str, ...]] = set()
        for sentence in sentences:
            key = sentence.tokens
            if key in seen_here:
                continue
            seen_here.add(key)
            if key in first_seen and first_seen[key] != split:
                shared[(first_seen[key], split)].append(sentence.source)
            first_seen.setdefault(key, split)
    for (earlier, later), sources in shared.items():
        collect.add(
            WARNING,
            "duplicate_across_splits",
            f"{len(sources)} sentence(s) of {SPLIT_FILES[later]} also appear in {SPLIT_FILES[earlier]} "
            f"(first: {', '.join(sources[:3])}): evaluation leaks training data",
            SPLIT_FILES[later],
            fix="remove the duplicates from one split (short sentences such as ':' may be harmless)",
        )
    types = {
        split: {entity.type for s in sentences for entity in extract_entities(s.tags)}
        for split, sentences in sentences_by_split.items()
    }
    train = types.get(REQUIRED_SPLITS[0])
    if train is None:
        return
    for split, found in types.items():
        if split == REQUIRED_SPLITS[0]:
            continue
        if found - train:
            collect.add(
                WARNING,
                "type_not_in_train",
                f"entity type(s) {sorted(found - train)} never occur in train.jsonl",
                SPLIT_FILES[split],
                fix="the model cannot learn them: add training examples",
            )
        if train - found:
            collect.add(
                WARNING,
                "type_missing_in_split",
                f"entity type(s) {sorted(train - found)} of train.jsonl never occur here",
                SPLIT_FILES[split],
                fix="scores for them will be missing from this split",
            )


def _check_manifest(folder: Path, collect: _Collector) -> None:
    try:
        manifest = read_manifest(folder)
        problems = manifest_mismatches(folder, manifest) if manifest is not None else []
    except DataError as error:
        collect.add(ERROR, "bad_manifest", error.message, "manifest.json", fix=error.fix)
        return
    for problem in problems:
        collect.add(
            ERROR,
            "manifest_mismatch",
            problem,
            "manifest.json",
            fix="re-run `ner-data convert` (the manifest is stale)",
        )
