"""IOB2 tag scheme: parsing tags, valid transitions and entity spans.

Pure Python (no torch) so that data validation, the CRF constraints, metrics and the ONNX
predictor all share one definition of what a valid IOB2 sequence is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ner_lightning.contract import OUTSIDE_TAG


class Entity(NamedTuple):
    """An entity over words `start` (inclusive) to `end` (exclusive)."""

    type: str
    start: int
    end: int


def split_tag(tag: str) -> tuple[str, str]:
    """Split an IOB2 tag into (prefix, type): `B-PER` -> ("B", "PER"), `O` -> ("O", "").

    Raises:
        ValueError: The tag is neither `O` nor `B-<type>`/`I-<type>` with a non-blank type.
    """
    if tag == OUTSIDE_TAG:
        return OUTSIDE_TAG, ""
    prefix, sep, entity_type = tag.partition("-")
    if not sep or prefix not in ("B", "I") or not entity_type.strip():
        raise ValueError(f"tag {tag!r} is not IOB2 (expected 'O', 'B-<type>' or 'I-<type>')")
    return prefix, entity_type


def is_allowed_transition(previous: str | None, current: str) -> bool:
    """Whether `current` may follow `previous` in strict IOB2 (`previous=None` at sentence start).

    `I-X` may only follow `B-X` or `I-X`; every other tag may follow anything.
    """
    prefix, entity_type = split_tag(current)
    if prefix != "I":
        return True
    if previous is None:
        return False
    prev_prefix, prev_type = split_tag(previous)
    return prev_prefix in ("B", "I") and prev_type == entity_type


def extract_entities(tags: Sequence[str], *, strict: bool = False) -> list[Entity]:
    """Entities in a tag sequence.

    Args:
        tags: IOB2 tags, one per word.
        strict: If True, an `I-X` that does not continue an `X` entity is ignored (strict IOB2,
            as seqeval's strict mode). If False (conlleval-compatible), it opens a new entity.

    Returns:
        Entities in order of their start.
    """
    entities: list[Entity] = []
    current_type: str | None = None
    start = 0
    for position, tag in enumerate(tags):
        prefix, entity_type = split_tag(tag)
        continues = prefix == "I" and current_type == entity_type
        if continues:
            continue
        if current_type is not None:
            entities.append(Entity(current_type, start, position))
            current_type = None
        if prefix == "B" or (prefix == "I" and not strict):
            current_type, start = entity_type, position
    if current_type is not None:
        entities.append(Entity(current_type, start, len(tags)))
    return entities
