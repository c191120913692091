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


#: Schemes whose entities must be closed explicitly: (opening, continuing, closing, single-word) prefixes.
_CLOSED_SCHEMES: Final = {"bioes": ("B", "I", "E", "S"), "bilou": ("B", "I", "L", "U")}


def scheme_violations(tags: Sequence[str], scheme: str) -> list[tuple[int, str]]:
    """Where a sentence breaks its scheme's rules, as `(word position, what is wrong)`.

    IOB2: an `I-X` must follow `B-X` or `I-X`. BIOES (BILOU alike, with `L`/`U` for `E`/`S`): an
    `I-X` or `E-X` must follow `B-X` or `I-X`, and a `B-X` or `I-X` must be followed by `I-X` or
    `E-X`, so `S-PER E-PER`, `S-PER I-PER` and `B-PER B-PER` are broken. IOB1 has no broken
    sequence. Tags must belong to the scheme (see `to_iob2`).

    Raises:
        ValueError: Unknown scheme, or a tag that does not belong to the scheme.
    """
    if scheme not in _PREFIXES:
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if scheme == "iob1":
        return []
    if scheme == "iob2":
        for tag in tags:
            _parse(tag, scheme)
        return [
            (position, f"tag {tags[position]!r} has no opening B- tag before it")
            for position in iob2_violations(tags)
        ]
    begin, inside, end, _ = _CLOSED_SCHEMES[scheme]
    problems: list[tuple[int, str]] = []
    open_tag: str | None = None  # the B-X / I-X tag whose entity is still open
    for position, tag in enumerate(tags):
        _parse(tag, scheme)
        prefix, _, entity_type = tag.partition("-") if tag != OUTSIDE_TAG else (OUTSIDE_TAG, "", "")
        open_type = open_tag.partition("-")[2] if open_tag else None
        if prefix in (inside, end):
            if open_type != entity_type:
                before = repr(tags[position - 1]) if position else "the sentence start"
                problems.append(
                    (
                        position,
                        f"tag {tag!r} does not continue an entity: it follows {before}, not {begin}-/{inside}-{entity_type}",
                    )
                )
        elif open_tag is not None:
            problems.append(
                (
                    position - 1,
                    f"tag {open_tag!r} opens an entity that is never closed: {tag!r} follows it, not {inside}-/{end}-{open_type}",
                )
            )
        open_tag = tag if prefix in (begin, inside) else None
    if open_tag is not None:
        problems.append(
            (
                len(tags) - 1,
                f"the sentence ends inside an entity: {tags[-1]!r} is not closed by {end}-{open_tag.partition('-')[2]}",
            )
        )
    return problems


def lenient_iob2(tags: Sequence[str], scheme: str) -> list[str]:
    """Read a possibly broken sentence of `scheme` as IOB2, the way `--repair` does.

    Every tag that cannot continue the open entity opens a new one (`I-X`/`E-X` become `B-X`); an
    entity left open ends where the next one starts. So `S-PER E-PER` and `S-PER I-PER` are two
    one-word entities, as `B-PER B-PER` is. IOB2 and IOB1 input get `repair_iob2` of `to_iob2`.
    """
    if scheme not in _CLOSED_SCHEMES:
        return repair_iob2(to_iob2(tags, scheme))[0]
    _, inside, end, single = _CLOSED_SCHEMES[scheme]
    out: list[str] = []
    open_type: str | None = None
    for tag in tags:
        prefix, entity_type = _parse(tag, scheme)
        raw_prefix = tag.partition("-")[0]
        if prefix == OUTSIDE_TAG:
            out.append(OUTSIDE_TAG)
            open_type = None
            continue
        continues = raw_prefix in (inside, end) and open_type == entity_type
        out.append(f"{'I' if continues else 'B'}-{entity_type}")
        open_type = None if raw_prefix in (end, single) else entity_type
    return out


def convert_scheme(
    tags: Sequence[str],
    scheme: str,
    *,
    path: str | None = None,
    line: int | None = None,
    repair: bool = False,
) -> tuple[list[str], int]:
    """Convert a sentence to IOB2 after checking it is well formed in its own scheme.

    Args:
        tags: Tags of one sentence in `scheme`.
        scheme: One of `SCHEMES`.
        path: File the sentence is in, for the error message.
        line: Line (or record) number of the sentence in that file.
        repair: Read a broken sentence leniently (`lenient_iob2`) instead of failing.

    Returns:
        The IOB2 tags and the number of problems repaired.

    Raises:
        DataError: A tag is not in the scheme, or (without `repair`) the sentence is not well
            formed (an orphan `I-X` in IOB2; an unclosed or orphan entity in BIOES/BILOU). The
            message quotes the tag as it is in the file.
    """
    try:
        problems = scheme_violations(tags, scheme)
    except ValueError as error:
        raise DataError(
            str(error),
            path=path,
            line=line,
            fix=f"pass the scheme the file uses (--scheme {'/'.join(SCHEMES)}) or fix the tag",
        ) from None
    if problems and not repair:
        position, problem = problems[0]
        name = scheme.upper()
        fix = (
            "fix the tag, convert with --scheme iob1 if the file is IOB1, or pass --repair to turn each orphan I-X into B-X"
            if scheme == "iob2"
            else f"fix the tags, or pass --repair to read every tag that cannot continue an entity as opening one "
            f"(so {'S' if scheme == 'bioes' else 'U'}-PER E-PER becomes two entities)"
        )
        raise DataError(
            f"word {position + 1}: {problem} (not well-formed {name}; {len(problems)} problem(s) in this sentence)",
            path=path,
            line=line,
            fix=fix,
        )
    if problems:
        return lenient_iob2(tags, scheme), len(problems)
    return to_iob2(tags, scheme), 0
