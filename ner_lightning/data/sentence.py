"""The unit every ingestion reader produces: one sentence of words with one tag per word."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sentence:
    """A tagged sentence read from a source file, before it is written to a canonical folder.

    Args:
        tokens: Words of the sentence.
        tags: One tag per word (IOB2 once the converters are done with it).
        source: Where the sentence came from (`file:line` or `file:record`), for error messages.
        document: Index of the source document the sentence was cut from; the splitter keeps the
            sentences of one document in the same split so that no document leaks across splits.
    """

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    source: str = ""
    document: int | None = None
