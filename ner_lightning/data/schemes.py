"""Tag scheme conversion to IOB2 (from IOB1, BIOES/BILOU) and repair of orphan `I-` tags.

IOB2 is the only scheme the rest of the project reads; other schemes are converted on the way in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ner_lightning.contract import OUTSIDE_TAG
from ner_lightning.errors import DataError
from ner_lightning.tags import is_allowed_transition, split_tag

#: Scheme names accepted by `to_iob2` and `ner-data convert --scheme`.
SCHEMES: Final = ("iob2", "iob1", "bioes", "bilou")

# Prefix of each scheme -> IOB2 prefix ("B" opens an entity, "I" continues it).
_PREFIXES: Final = {
    "iob2": {"B": "B", "I": "I"},
    "iob1": {"B": "B", "I": "I"},
    "bioes": {"B": "B", "I": "I", "E": "I", "S": "B"},
    "bilou": {"B": "B", "I": "I", "L": "I", "U": "B"},
}


def _parse(tag: str, scheme: str) -> tuple[str, str]:
    """Split a tag of `scheme` into (IOB2 prefix, type); raises ValueError for a foreign tag."""
    if tag == OUTSIDE_TAG:
        return OUTSIDE_TAG, ""
    prefix, sep, entity_type = tag.partition("-")
    mapped = _PREFIXES[scheme].get(prefix)
    if not sep or mapped is None or not entity_type.strip():
        allowed = ", ".join(f"'{p}-<type>'" for p in _PREFIXES[scheme])
        raise ValueError(f"tag {tag!r} is not {scheme.upper()} (expected 'O', {allowed})")
    return mapped, entity_type


def to_iob2(tags: Sequence[str], scheme: str = "iob2") -> list[str]:
    """Convert one sentence's tags from `scheme` to IOB2.

    IOB1 uses `I-X` to open an entity unless it follows an `X` entity, so an `I-X` that does not
    continue an `X` becomes `B-X`. BIOES/BILOU map `S`/`U` to `B` and `E`/`L` to `I`. IOB2 input is
    returned unchanged (use `repair_iob2` for orphan `I-` tags).

    Args:
        tags: Tags of one sentence.
        scheme: One of `SCHEMES`.

    Returns:
        The IOB2 tags.

    Raises:
        ValueError: Unknown scheme, or a tag that does not belong to the scheme.
    """
    if scheme not in _PREFIXES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    out: list[str] = []
    previous_type: str | None = None
    for tag in tags:
        prefix, entity_type = _parse(tag, scheme)
        if prefix == OUTSIDE_TAG:
            out.append(OUTSIDE_TAG)
            previous_type = None
            continue
        if scheme == "iob1" and prefix == "I" and previous_type != entity_type:
            prefix = "B"
        out.append(f"{prefix}-{entity_type}")
        previous_type = entity_type
    return out


def iob2_violations(tags: Sequence[str]) -> list[int]:
    """Positions of `I-X` tags that do not follow `B-X` or `I-X` (tags must parse as IOB2)."""
    bad: list[int] = []
    previous: str | None = None
    for position, tag in enumerate(tags):
        if not is_allowed_transition(previous, tag):
            bad.append(position)
        previous = tag
    return bad


def repair_iob2(tags: Sequence[str]) -> tuple[list[str], int]:
    """Turn every orphan `I-X` (one that does not continue an `X` entity) into `B-X`.

    This is the conlleval reading of such a tag (it opens a new entity), made explicit.

    Returns:
        The repaired tags and the number of tags changed.
    """
    repaired = list(tags)
    positions = iob2_violations(tags)
    for position in positions:
        repaired[position] = "B-" + split_tag(tags[position])[1]
    return repaired, len(positions)


def convert_scheme(
    tags: Sequence[str],
    scheme: str,
    *,
    path: str | None = None,
    line: int | None = None,
    repair: bool = False,
) -> tuple[list[str], int]:
    """Convert a sentence to IOB2 and check it, as the converters do for every input sentence.

    Args:
        tags: Tags of one sentence in `scheme`.
        scheme: One of `SCHEMES`.
        path: File the sentence is in, for the error message.
        line: Line (or record) number of the sentence in that file.
        repair: Turn orphan `I-X` tags into `B-X` instead of failing.

    Returns:
        The IOB2 tags and the number of repaired tags.

    Raises:
        DataError: A tag is not in the scheme, or (without `repair`) an `I-X` has no opening `B-X`.
    """
    try:
        converted = to_iob2(tags, scheme)
    except ValueError as error:
        raise DataError(
            str(error),
            path=path,
            line=line,
            fix=f"pass the scheme the file uses (--scheme {'/'.join(SCHEMES)}) or fix the tag",
        ) from None
    bad = iob2_violations(converted)
    if bad and not repair:
        raise DataError(
            f"word {bad[0] + 1} has tag {converted[bad[0]]!r} with no opening B- tag before it "
            f"({len(bad)} such tag(s) in this sentence)",
            path=path,
            line=line,
            fix="fix the tag, convert with --scheme iob1 if the file is IOB1, or pass --repair-iob2 "
            "to turn each orphan I-X into B-X",
        )
    if bad:
        converted, _ = repair_iob2(converted)
    return converted, len(bad)
