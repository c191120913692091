"""Character-span JSON Lines -> IOB2 sentences, with every span that cannot be mapped accounted for.

Two record shapes are read (detected per record):

- the DataTurks shape of the resume corpus, `end` INCLUSIVE:
  `{"content": "...", "annotation": [{"label": ["Skills"], "points": [{"start": 3, "end": 9, "text": "..."}]}]}`
- the common shape, `end` exclusive:
  `{"text": "...", "spans": [[start, end, "LABEL"], ...]}` (or `"entities"`, or objects with
  `start`/`end`/`label` keys).

The text is cut into words with a regex tokenizer (runs of word characters, or single other
non-space characters) that keeps character offsets. Each span is trimmed of edge whitespace and
must start and end on word edges. Overlaps are resolved by a stated rule. Documents are cut into
line-sized examples (never inside a kept span), and long lines into pieces of at most `max_words`
words, preferably after a sentence end. Every span not kept is returned with a reason, so that
kept + rejected = total.
"""

from __future__ import annotations

import bisect
import itertools
import json
import re
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from ner_lightning.contract import OUTSIDE_TAG
from ner_lightning.data.sentence import Sentence
from ner_lightning.data.textfile import parse_json_object, text_lines
from ner_lightning.errors import DataError

#: Words are runs of word characters or single other non-space characters (punctuation apart).
WORD_PATTERN: Final = re.compile(r"\w+|[^\w\s]")
#: Overlap rules: `longest` keeps the longest span (ties: the earliest, then the first listed);
#: `first` keeps the earliest-starting span (ties: the longest); `drop` rejects every span that
#: overlaps another.
OVERLAP_RULES: Final = ("longest", "first", "drop")
#: Example sizes: one line of text, one paragraph (text between blank lines), or the whole document.
SEGMENT_UNITS: Final = ("line", "paragraph", "document")
#: Labels treated as unknown by default (the resume corpus marks unsure spans `UNKNOWN`).
DEFAULT_DROP_LABELS: Final = ("UNKNOWN",)
#: Why a span was rejected, in report order.
REJECT_REASONS: Final = {
    "bad_offsets": "start or end missing or not an integer",
    "start_after_end": "start is after end",
    "out_of_range": "start or end outside the text",
    "empty_label": "label missing, empty or whitespace only",
    "outside_label": "label 'O' means outside any entity, not an entity type",
    "unknown_label": "label is in the drop list or not in the allowed labels",
    "text_mismatch": "the span's stored text differs from the text at its offsets",
    "whitespace_span": "the span covers only whitespace",
    "crosses_token_boundary": "the span starts or ends inside a word",
    "duplicate": "same start, end and label as a kept span",
    "overlap": "overlaps a kept span (lost under the overlap rule)",
}
_SENTENCE_END: Final = frozenset(".!?;")
#: A span label that carries an IOB prefix (`B-LOC`, `I-LOC`): the prefix is stripped and counted.
_PREFIXED_LABEL: Final = re.compile(r"^[BI]-(?=\S)")
_RECORD_SHAPE: Final = '{"text": ..., "spans": [[start, end, label]]} or the DataTurks shape'


@dataclass(frozen=True)
class RejectedSpan:
    """A span that was not turned into tags, and why.

    Args:
        file: Name of the source file.
        record: 1-based line of the record in that file.
        start: Start offset as given.
        end: End offset as given (inclusive for the DataTurks shape).
        label: Label as given.
        reason: A key of `REJECT_REASONS`.
        detail: Human-readable specifics.
        text: The text at the offsets (shortened), when the offsets are usable.
    """

    file: str
    record: int
    start: Any
    end: Any
    label: Any
    reason: str
    detail: str
    text: str = ""


@dataclass(frozen=True)
class KeptSpan:
    """A span that became an entity: words `token_start:token_end` of sentence `sentence`.

    Args:
        sentence: Index of the sentence in `SpanConversion.sentences`.
        token_start: First word of the entity in that sentence.
        token_end: One past the last word.
        label: Entity type.
        text: The span's text after trimming edge whitespace.
    """

    sentence: int
    token_start: int
    token_end: int
    label: str
    text: str


@dataclass
class SpanConversion:
    """Result of converting one span file.

    Args:
        sentences: IOB2 sentences.
        kept: Spans that became entities.
        rejected: Spans that did not, with reasons.
        documents: Number of records read.
        stripped_prefixes: Span labels given with an IOB prefix (`B-LOC`) whose prefix was stripped.
    """

    sentences: list[Sentence] = field(default_factory=list)
    kept: list[KeptSpan] = field(default_factory=list)
    rejected: list[RejectedSpan] = field(default_factory=list)
    documents: int = 0
    stripped_prefixes: int = 0

    @property
    def total(self) -> int:
        """Spans read: kept + rejected."""
        return len(self.kept) + len(self.rejected)

    def report(self) -> dict[str, Any]:
        """Counts for the conversion report: totals, kept per label, dropped per reason."""
        reasons = Counter(span.reason for span in self.rejected)
        return {
            "documents": self.documents,
            "sentences": len(self.sentences),
            "total_spans": self.total,
            "kept_spans": len(self.kept),
            "dropped_spans": len(self.rejected),
            "dropped_by_reason": {reason: reasons[reason] for reason in REJECT_REASONS if reasons[reason]},
            "kept_by_label": dict(sorted(Counter(span.label for span in self.kept).items())),
            "stripped_label_prefixes": self.stripped_prefixes,
        }

    def extend(self, other: SpanConversion) -> None:
        """Append another file's result (sentence indices of its kept spans are shifted)."""
        offset = len(self.sentences)
        self.sentences.extend(other.sentences)
        self.kept.extend(
            KeptSpan(k.sentence + offset, k.token_start, k.token_end, k.label, k.text) for k in other.kept
        )
        self.rejected.extend(other.rejected)
        self.documents += other.documents
        self.stripped_prefixes += other.stripped_prefixes


@dataclass(frozen=True)
class _Candidate:
    order: int
    start: int  # trimmed, exclusive end
    end: int
    label: str
    raw: RejectedSpan  # the span as given, turned into a rejection if it loses


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Words of `text` with their character offsets `(word, start, end)` (end exclusive)."""
    return [(match.group(), match.start(), match.end()) for match in WORD_PATTERN.finditer(text)]


def read_span_jsonl(
    path: str | Path,
    *,
    overlap: str = "longest",
    segment: str = "line",
    max_words: int = 128,
    allowed_labels: Collection[str] | None = None,
    drop_labels: Collection[str] = DEFAULT_DROP_LABELS,
    end_inclusive: bool | None = None,
    first_document: int = 0,
) -> SpanConversion:
    """Convert a character-span JSON Lines file into IOB2 sentences.

    Args:
        path: The file, one document per line.
        overlap: One of `OVERLAP_RULES`.
        segment: One of `SEGMENT_UNITS`: the unit a document is cut into before long units are
            cut to `max_words`.
        max_words: Longest example in words; longer units are cut after a sentence end, else
            between words, never inside an entity (a longer entity stays whole).
        allowed_labels: If given, spans with other labels are rejected as `unknown_label`.
        drop_labels: Labels rejected as `unknown_label`.
        end_inclusive: Whether `end` is inclusive; default by record shape (`content`: inclusive,
            `text`: exclusive).
        first_document: Document number of the first record (keeps numbers unique across files).

    Returns:
        Sentences, kept spans and rejected spans.

    Raises:
        DataError: Unreadable file, malformed JSON, a record without text, annotations that are
            not a list, or a bad option.
    """
    if overlap not in OVERLAP_RULES:
        raise DataError(
            f"unknown overlap rule {overlap!r}", field="overlap", fix=f"use one of {OVERLAP_RULES}"
        )
    if segment not in SEGMENT_UNITS:
        raise DataError(
            f"unknown segment unit {segment!r}", field="segment", fix=f"use one of {SEGMENT_UNITS}"
        )
    if max_words < 1:
        raise DataError("max_words must be at least 1", field="max_words", fix="pass a positive number")
    path = Path(path)
    result = SpanConversion()
    for number, line in enumerate(text_lines(path), 1):
        if not line.strip():
            continue
        record = parse_json_object(line, path, number, shape=_RECORD_SHAPE)
        text, candidates, rejected = _spans_of(record, path, number, end_inclusive)
        result.rejected.extend(rejected)
        result.stripped_prefixes += sum(c.label != c.raw.label.strip() for c in candidates)
        sentences, kept, lost = _convert_document(
            text,
            candidates,
            overlap=overlap,
            segment=segment,
            max_words=max_words,
            allowed=set(allowed_labels) if allowed_labels is not None else None,
            drop=set(drop_labels),
        )
        result.rejected.extend(lost)
        offset = len(result.sentences)
        document = first_document + result.documents
        for tokens, tags in sentences:
            result.sentences.append(Sentence(tokens, tags, f"{path}:{number}", document))
        result.kept.extend(
            KeptSpan(k.sentence + offset, k.token_start, k.token_end, k.label, k.text) for k in kept
        )
        result.documents += 1
    return result


def _spans_of(
    record: dict[str, Any], path: Path, number: int, end_inclusive: bool | None
) -> tuple[str, list[_Candidate], list[RejectedSpan]]:
    """The document text, its spans with usable offsets and labels, and the spans rejected early."""
    if "content" in record:
        text_field, inclusive = "content", True if end_inclusive is None else end_inclusive
        raw_spans = list(_dataturks_spans(record.get("annotation"), path, number))
    elif "text" in record:
        text_field, inclusive = "text", False if end_inclusive is None else end_inclusive
        key = "spans" if "spans" in record else "entities"
        raw_spans = list(_list_spans(record.get(key), key, path, number))
    else:
        raise DataError(
            f"record has neither 'content' nor 'text' (fields: {', '.join(sorted(record)) or 'none'})",
            path=path,
            line=number,
            field="text",
            fix='add the document text as "text" (with "spans") or "content" (with "annotation")',
        )
    text = record[text_field]
    if not isinstance(text, str):
        raise DataError(
            f"expected a string, found {type(text).__name__}",
            path=path,
            line=number,
            field=text_field,
            fix="store the document text as a JSON string",
        )
    candidates: list[_Candidate] = []
    rejected: list[RejectedSpan] = []
    for order, (start, end, label, stored_text) in enumerate(raw_spans):
        raw = RejectedSpan(path.name, number, start, end, label, "", "")

        def reject(reason: str, detail: str, shown: str = "", raw: RejectedSpan = raw) -> None:
            rejected.append(
                RejectedSpan(raw.file, raw.record, raw.start, raw.end, raw.label, reason, detail, shown[:200])
            )

        if not _is_int(start) or not _is_int(end):
            reject("bad_offsets", f"start={start!r} end={end!r}")
            continue
        stop = end + 1 if inclusive else end
        if start > stop or (inclusive and start > end):
            reject("start_after_end", f"start {start} > end {end}")
            continue
        if start < 0 or stop > len(text):
            reject("out_of_range", f"offsets {start}..{end} outside a text of {len(text)} characters")
            continue
        shown = text[start:stop]
        if not isinstance(label, str) or not label.strip():
            reject("empty_label", f"label {label!r}", shown)
            continue
        entity_type = _PREFIXED_LABEL.sub("", label.strip())
        if entity_type == OUTSIDE_TAG:
            reject("outside_label", "label 'O' marks words outside entities; it is not an entity type", shown)
            continue
        if stored_text is not None and stored_text != shown:
            reject(
                "text_mismatch", f"stored text {stored_text[:60]!r} but offsets give {shown[:60]!r}", shown
            )
            continue
        left = start + len(shown) - len(shown.lstrip())
        right = stop - (len(shown) - len(shown.rstrip()))
        if left >= right:
            reject("whitespace_span", "no characters other than whitespace", shown)
            continue
        candidates.append(_Candidate(order, left, right, entity_type, replace(raw, text=shown[:200])))
    return text, candidates, rejected


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dataturks_spans(
    annotation: object, path: Path, number: int
) -> Iterator[tuple[Any, Any, Any, str | None]]:
    """(start, end, label, stored text) per point and label of a DataTurks `annotation` list."""
    if annotation is None:
        return
    if not isinstance(annotation, list):
        raise DataError(
            f"expected a list, found {type(annotation).__name__}",
            path=path,
            line=number,
            field="annotation",
            fix='write "annotation": [{"label": [...], "points": [...]}]',
        )
    for item in annotation:
        if not isinstance(item, dict):
            yield None, None, None, None
            continue
        labels = item.get("label")
        labels = [labels] if isinstance(labels, str) or labels is None else labels
        if not isinstance(labels, list) or not labels:
            labels = [None]
        points = item.get("points")
        if not isinstance(points, list):
            for label in labels:
                yield None, None, label, None
            continue
        for point in points:
            point = point if isinstance(point, dict) else {}
            stored = point.get("text")
            for label in labels:
                yield point.get("start"), point.get("end"), label, stored if isinstance(stored, str) else None


def _list_spans(spans: object, key: str, path: Path, number: int) -> Iterator[tuple[Any, Any, Any, None]]:
    """(start, end, label, None) per item of a `spans`/`entities` list."""
    if spans is None:
        return
    if not isinstance(spans, list):
        raise DataError(
            f"expected a list, found {type(spans).__name__}",
            path=path,
            line=number,
            field=key,
            fix=f'write "{key}": [[start, end, "LABEL"], ...]',
        )
    for item in spans:
        if isinstance(item, dict):
            yield item.get("start"), item.get("end"), item.get("label"), None
        elif isinstance(item, list | tuple) and len(item) == 3:
            yield item[0], item[1], item[2], None
        else:
            yield None, None, None, None


def _convert_document(
    text: str,
    candidates: list[_Candidate],
    *,
    overlap: str,
    segment: str,
    max_words: int,
    allowed: set[str] | None,
    drop: set[str],
) -> tuple[list[tuple[tuple[str, ...], tuple[str, ...]]], list[KeptSpan], list[RejectedSpan]]:
    words = tokenize(text)
    starts = [start for _, start, _ in words]
    ends = [end for _, _, end in words]
    lost: list[RejectedSpan] = []

    def reject(candidate: _Candidate, reason: str, detail: str) -> None:
        raw = candidate.raw
        lost.append(
            RejectedSpan(raw.file, raw.record, raw.start, raw.end, raw.label, reason, detail, raw.text)
        )

    # (candidate, first word, one past last word) for spans that sit on word edges.
    mapped: list[tuple[_Candidate, int, int]] = []
    for candidate in candidates:
        if candidate.label in drop or (allowed is not None and candidate.label not in allowed):
            reject(candidate, "unknown_label", f"label {candidate.label!r} is not accepted")
            continue
        first = bisect.bisect_left(starts, candidate.start)
        last = bisect.bisect_left(ends, candidate.end)
        if (
            first >= len(words)
            or starts[first] != candidate.start
            or last >= len(words)
            or ends[last] != candidate.end
        ):
            inside = _word_around(words, starts, candidate.start, candidate.end)
            reject(candidate, "crosses_token_boundary", f"span edge falls inside the word {inside!r}")
            continue
        mapped.append((candidate, first, last + 1))

    kept = _resolve_overlaps(mapped, overlap, reject)
    tags = [OUTSIDE_TAG] * len(words)
    inside_entity = [False] * (len(words) + 1)  # inside_entity[i]: a cut before word i would split an entity
    for candidate, first, stop in kept:
        tags[first] = f"B-{candidate.label}"
        for position in range(first + 1, stop):
            tags[position] = f"I-{candidate.label}"
            inside_entity[position] = True

    sentences: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    sentence_of_word: dict[int, tuple[int, int]] = {}
    for lo, hi in _segments(text, words, inside_entity, segment, max_words):
        for position in range(lo, hi):
            sentence_of_word[position] = (len(sentences), position - lo)
        sentences.append((tuple(w for w, _, _ in words[lo:hi]), tuple(tags[lo:hi])))
    kept_spans = []
    for candidate, first, stop in sorted(kept, key=lambda item: item[1]):
        sentence, offset = sentence_of_word[first]
        kept_spans.append(
            KeptSpan(
                sentence,
                offset,
                offset + stop - first,
                candidate.label,
                text[candidate.start : candidate.end],
            )
        )
    return sentences, kept_spans, lost


def _word_around(words: list[tuple[str, int, int]], starts: list[int], start: int, end: int) -> str:
    """The word that a span edge cuts through."""
    for edge in (start, end - 1):
        index = bisect.bisect_right(starts, edge) - 1
        if index >= 0 and words[index][1] <= edge < words[index][2]:
            word, word_start, word_end = words[index]
            if word_start < start or word_end > end:
                return word
    return ""


def _resolve_overlaps(
    mapped: list[tuple[_Candidate, int, int]], rule: str, reject: Any
) -> list[tuple[_Candidate, int, int]]:
    """Kept spans under the overlap rule; the others go to `reject`. Works on word ranges."""
    seen: set[tuple[int, int, str]] = set()
    unique = []
    for item in mapped:
        key = (item[1], item[2], item[0].label)
        if key in seen:
            reject(item[0], "duplicate", "the same span is listed earlier")
            continue
        seen.add(key)
        unique.append(item)
    if rule == "drop":
        clashing = {a[0].order for a in unique for b in unique if a is not b and a[1] < b[2] and b[1] < a[2]}
        for item in unique:
            if item[0].order in clashing:
                reject(item[0], "overlap", "overlaps another span (overlap rule: drop)")
        return [item for item in unique if item[0].order not in clashing]
    if rule == "longest":
        ordered = sorted(
            unique, key=lambda item: (-(item[0].end - item[0].start), item[0].start, item[0].order)
        )
    else:
        ordered = sorted(
            unique, key=lambda item: (item[0].start, -(item[0].end - item[0].start), item[0].order)
        )
    occupied = [False] * (max((item[2] for item in unique), default=0))
    kept = []
    for item in ordered:
        if any(occupied[item[1] : item[2]]):
            winner = next(k for k in kept if k[1] < item[2] and item[1] < k[2])
            reject(
                item[0],
                "overlap",
                f"overlaps the kept {winner[0].label!r} span at {winner[0].start}..{winner[0].end} (rule: {rule})",
            )
            continue
        occupied[item[1] : item[2]] = [True] * (item[2] - item[1])
        kept.append(item)
    return kept


def _segments(
    text: str, words: list[tuple[str, int, int]], inside_entity: list[bool], unit: str, max_words: int
) -> Iterator[tuple[int, int]]:
    """Word ranges of the examples of one document."""
    boundaries = []  # word indices before which the unit changes
    if unit != "document":
        breaker = re.compile(r"\n" if unit == "line" else r"\n[^\S\n]*\n")
        for index in range(1, len(words)):
            gap = text[words[index - 1][2] : words[index][1]]
            if breaker.search(gap) and not inside_entity[index]:
                boundaries.append(index)
    edges = [0, *boundaries, len(words)]
    for lo, hi in itertools.pairwise(edges):
        yield from _cut_long(words, inside_entity, lo, hi, max_words)


def _cut_long(
    words: list[tuple[str, int, int]], inside_entity: list[bool], lo: int, hi: int, max_words: int
) -> Iterator[tuple[int, int]]:
    """Cut words lo:hi into pieces of at most max_words, after a sentence end where possible."""
    while hi - lo > max_words:
        cut = None
        for index in range(lo + max_words, lo, -1):
            if not inside_entity[index] and words[index - 1][0] in _SENTENCE_END:
                cut = index
                break
        if cut is None:
            cut = next((i for i in range(lo + max_words, lo, -1) if not inside_entity[i]), None)
        if cut is None:  # one entity longer than max_words: keep it whole, cut after it
            cut = next((i for i in range(lo + max_words + 1, hi) if not inside_entity[i]), hi)
        yield lo, cut
        lo = cut
    if hi > lo:
        yield lo, hi


def rejects_jsonl(rejected: list[RejectedSpan]) -> str:
    """The rejects file: one JSON object per rejected span (sorted keys), each line ending in `\\n`."""
    return "".join(json.dumps(asdict(span), ensure_ascii=False, sort_keys=True) + "\n" for span in rejected)
