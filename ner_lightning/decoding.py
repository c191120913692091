"""Word decoding of per-subword scores: the one decode path of training, smoke test and serving.

A head's scores `[B, T, num_labels]` are read at the first subword of each word, gathered
left-aligned (word `k` of a row at step `k`) and handed to a *decoder*: a numpy function from
`[B, W, num_labels]` word scores and row lengths to one label id per word. Decoders are
registered here by name; a model folder's `ner_model.json` names its decoder and the decoder's
arguments (`{"name": "crf_viterbi", "args": {...}}`), so the torch-free predictor can rebuild it.
Training-time evaluation and the smoke test's PyTorch reference call the same function on the
same decoder, so all three decode identically by construction.

Numpy only: this module must never import torch (the ONNX predictor imports it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ner_lightning.errors import ModelError
from ner_lightning.onnx.viterbi import CrfScores, argmax_decode, viterbi_decode

#: `decoder(word_scores [B, W, L], lengths [B]) -> one list of label ids per row, of that row's length`.
Decoder = Callable[[np.ndarray, Sequence[int]], list[list[int]]]
#: `factory(args from ner_model.json, number of labels) -> Decoder`; raises ModelError on bad args.
DecoderFactory = Callable[[Mapping[str, Any], int], Decoder]

_DECODERS: dict[str, DecoderFactory] = {}


def register_decoder(name: str) -> Callable[[DecoderFactory], DecoderFactory]:
    """Register a decoder factory under `name` (decorator).

    Only decoders registered by modules of this package are available to the predictor: a model
    folder names its decoder, it never brings code.
    """

    def register(factory: DecoderFactory) -> DecoderFactory:
        _DECODERS[name] = factory
        return factory

    return register


def available_decoders() -> list[str]:
    """Names of the registered decoders, sorted."""
    return sorted(_DECODERS)


def build_decoder(name: str, args: Mapping[str, Any] | None, num_labels: int) -> Decoder:
    """The decoder `name` with its arguments.

    Raises:
        ModelError: No decoder of that name, or its arguments do not fit.
    """
    factory = _DECODERS.get(name)
    if factory is None:
        raise ModelError(
            f"unknown decoder {name!r}; available decoders: {', '.join(available_decoders())}",
            field="decoder.name",
            fix="use a head whose decoder is one of these, or register a new decoder in ner_lightning/decoding.py",
        )
    return factory(dict(args or {}), num_labels)


def decoder_from_metadata(metadata: Mapping[str, Any], num_labels: int) -> Decoder:
    """The decoder a model folder's `ner_model.json` names.

    Folders exported before decoders were named carry `use_crf` and a `crf` section instead.
    """
    section = metadata.get("decoder")
    if section is None:
        if metadata.get("use_crf"):
            return build_decoder("crf_viterbi", _crf_section(metadata), num_labels)
        return build_decoder("argmax", {}, num_labels)
    if not isinstance(section, Mapping) or not isinstance(section.get("name"), str):
        raise ModelError(
            f"the decoder section must be an object with a name, got {section!r}",
            field="decoder",
            fix="re-export the model",
        )
    return build_decoder(section["name"], section.get("args"), num_labels)


def decode_words(scores: np.ndarray, word_mask: np.ndarray, decoder: Decoder) -> np.ndarray:
    """Decode the word positions of a batch of subword scores.

    Args:
        scores: `[B, T, L]` per-subword scores (a head's graph output).
        word_mask: `[B, T]` bool, True at the first subword of each word.
        decoder: The head's decoder.

    Returns:
        `[B, T]` int64 label ids at word positions, -1 elsewhere.
    """
    scores = np.asarray(scores, dtype=np.float32)
    word_mask = np.asarray(word_mask, dtype=bool)
    batch = scores.shape[0]
    positions = [np.flatnonzero(word_mask[row]) for row in range(batch)]
    lengths = [len(p) for p in positions]
    gathered = np.zeros((batch, max(lengths, default=0), scores.shape[-1]), dtype=np.float32)
    for row, rows in enumerate(positions):
        gathered[row, : len(rows)] = scores[row, rows]
    paths = decoder(gathered, lengths)
    result = np.full(word_mask.shape, -1, dtype=np.int64)
    for row, (rows, path) in enumerate(zip(positions, paths, strict=True)):
        if len(path) != len(rows):
            raise ModelError(
                f"the decoder returned {len(path)} labels for a row of {len(rows)} words",
                field="decoder",
                fix="a decoder must return exactly one label id per word",
            )
        result[row, rows] = path
    return result


@register_decoder("argmax")
def _argmax(args: Mapping[str, Any], num_labels: int) -> Decoder:
    """Per-word argmax (softmax-style heads)."""
    return argmax_decode


@register_decoder("crf_viterbi")
def _crf_viterbi(args: Mapping[str, Any], num_labels: int) -> Decoder:
    """Viterbi over word steps with the IOB2-constrained CRF scores (see `ner_lightning.model.crf`)."""
    try:
        scores = CrfScores.constrained(
            args["transitions"],
            args["start_transitions"],
            args["end_transitions"],
            args["allowed_transitions"],
            args["allowed_start"],
            args["allowed_end"],
            float(args["disallowed_score"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(
            f"the crf section is incomplete: {error}", field="crf", fix="re-export the model"
        ) from error
    if scores.num_tags != num_labels:
        raise ModelError(
            f"the CRF decodes {scores.num_tags} tags but labels.json lists {num_labels}",
            field="crf",
            fix="use the labels.json exported with this model",
        )

    def decode(emissions: np.ndarray, lengths: Sequence[int]) -> list[list[int]]:
        return viterbi_decode(emissions, lengths, scores)

    return decode


def _crf_section(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    section = metadata.get("crf")
    if not isinstance(section, Mapping):
        raise ModelError(
            "ner_model.json says use_crf but has no crf section", field="crf", fix="re-export the model"
        )
    return section
