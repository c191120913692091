"""Smoke test of a converted model: does the int8 ONNX folder still do what the checkpoint does?

Checks, each reported by name with its numbers in `smoke_report.json`: `labels_match` (the model
folder names the outputs as the checkpoint does), then the four of the issue:
(a) `emissions_match`: fp32 ONNX emissions equal PyTorch's within `emission_atol`;
(b) `tags_match`: fp32 ONNX word tags (numpy decode) equal PyTorch's exactly on a sample;
(c) `int8_f1`: the gate (`ner_lightning.onnx.gate`): int8 entity F1 on every held-out sentence is
    not significantly more than the tolerance below fp32's (paired bootstrap interval of the drop);
(d) `varied_lengths`: the int8 model answers one batch of varied lengths, from a single word to
    `max_length` subwords, and windows a sentence longer than `max_length`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ner_lightning.data.windows import NO_WORD, Window, make_windows, merge_owned
from ner_lightning.onnx.gate import GateResult, entity_counts, f1_from_counts
from ner_lightning.onnx.predictor import OnnxTagger


@dataclass
class Check:
    """One named check with its outcome and measurements."""

    name: str
    passed: bool
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class SmokeReport:
    """All checks of one smoke test."""

    checks: list[Check] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[str]:
        """Names of the failed checks."""
        return [check.name for check in self.checks if not check.passed]

    def to_json(self) -> dict[str, Any]:
        """The JSON written as `smoke_report.json`."""
        return {
            "passed": self.passed,
            "failed_checks": self.failed,
            "checks": [asdict(check) for check in self.checks],
            **self.context,
        }

    def write(self, path: str | Path) -> None:
        """Write the report as JSON."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    def summary(self) -> str:
        """One line per check, for logs."""
        return "\n".join(f"[{'PASS' if c.passed else 'FAIL'}] {c.name}: {c.message}" for c in self.checks)


def entity_f1(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Micro entity F1 (conlleval-compatible: a stray `I-X` opens an entity, like seqeval's default)."""
    return float(f1_from_counts(entity_counts(gold, predicted).sum(axis=0)))


class TorchTagger:
    """PyTorch reference: the checkpoint's model over the training windows (datamodule tokenization).

    Args:
        model: The `TokenClassifier`.
        tokenizer: Its transformers fast tokenizer.
        max_length: Window length (as in training).
        stride: Window overlap (as in training).
        batch_size: Windows per forward pass.
    """

    def __init__(
        self, model: torch.nn.Module, tokenizer: Any, max_length: int, stride: int, batch_size: int = 32
    ) -> None:
        from ner_lightning.data.datamodule import special_token_layout

        self.model = model.cpu().eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride
        self.batch_size = batch_size
        self.prefix, self.suffix = special_token_layout(tokenizer)
        self.token_type_ids = "token_type_ids" in tokenizer.model_input_names
        self.pad_id = tokenizer.pad_token_id or 0

    def windows(self, sentences: Sequence[Sequence[str]]) -> list[list[Window]]:
        """Windows of each sentence, as the data module cuts them."""
        from ner_lightning.data.datamodule import word_subword_ids

        encoded = word_subword_ids(self.tokenizer, [list(s) for s in sentences])
        return [
            make_windows(ids, self.prefix, self.suffix, self.max_length, self.stride) if ids else []
            for ids in encoded
        ]

    def batch(self, windows: Sequence[Window]) -> dict[str, torch.Tensor]:
        """Padded tensors of a batch of windows."""
        length = max(len(w.input_ids) for w in windows)
        input_ids = torch.full((len(windows), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(windows), length), dtype=torch.long)
        for row, window in enumerate(windows):
            input_ids[row, : len(window.input_ids)] = torch.tensor(window.input_ids)
            attention_mask[row, : len(window.input_ids)] = 1
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.token_type_ids:
            inputs["token_type_ids"] = torch.zeros_like(input_ids)
        return inputs

    @torch.no_grad()
    def emissions(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`[B, T, L]` emissions of a batch."""
        return self.model.emissions(
            inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids")
        )

    @torch.no_grad()
    def decode(self, windows: Sequence[Window]) -> list[list[int]]:
        """Per window, the decoded label id per position (-1 off word positions)."""
        results: list[list[int]] = []
        for begin in range(0, len(windows), self.batch_size):
            batch = list(windows[begin : begin + self.batch_size])
            inputs = self.batch(batch)
            scores = self.emissions(inputs)
            word_mask = torch.zeros(scores.shape[:2], dtype=torch.bool)
            for row, window in enumerate(batch):
                word_mask[row, : len(window.word_index)] = torch.tensor(
                    [w != NO_WORD for w in window.word_index]
                )
            ids = self.model.decode_words(scores, word_mask)  # the head's decoder, as in training
            results += [ids[row, : len(window.input_ids)].tolist() for row, window in enumerate(batch)]
        return results

    def tag_words(self, sentences: Sequence[Sequence[str]], label_names: Sequence[str]) -> list[list[str]]:
        """One tag per word of each sentence."""
        per_sentence = self.windows(sentences)
        flat = [w for windows in per_sentence for w in windows]
        decoded = self.decode(flat)
        tags, cursor = [], 0
        for windows in per_sentence:
            ids = merge_owned(windows, decoded[cursor : cursor + len(windows)]) if windows else []
            cursor += len(windows)
            tags.append([label_names[i] for i in ids])
        return tags


def check_labels(checkpoint_labels: Sequence[str], onnx_labels: Sequence[str]) -> Check:
    """The model folder names the outputs with the checkpoint's labels, in the same order."""
    moved = [i for i, (a, b) in enumerate(zip(checkpoint_labels, onnx_labels, strict=False)) if a != b]
    passed = list(checkpoint_labels) == list(onnx_labels)
    message = (
        f"labels.json matches the checkpoint's {len(checkpoint_labels)} labels"
        if passed
        else f"labels.json {list(onnx_labels)} differs from the checkpoint's {list(checkpoint_labels)}"
    )
    return Check("labels_match", passed, message, {"differing_positions": moved})


def check_emissions(
    torch_tagger: TorchTagger, onnx_tagger: OnnxTagger, sentences: Sequence[Sequence[str]], atol: float
) -> Check:
    """(a) fp32 ONNX emissions against PyTorch's on the sample's windows (padding positions excluded)."""
    windows = [w for ws in torch_tagger.windows(sentences) for w in ws]
    worst = 0.0
    for begin in range(0, len(windows), torch_tagger.batch_size):
        batch = windows[begin : begin + torch_tagger.batch_size]
        inputs = torch_tagger.batch(batch)
        expected = torch_tagger.emissions(inputs).numpy()
        got = onnx_tagger.emissions({k: v.numpy() for k, v in inputs.items()})
        if got.shape != expected.shape:
            return Check(
                "emissions_match", False, f"ONNX emissions have shape {got.shape}, PyTorch {expected.shape}"
            )
        mask = inputs["attention_mask"].numpy().astype(bool)
        difference = np.abs(expected - got)[mask]
        worst = max(worst, float(difference.max()) if difference.size else 0.0)
        if not math.isfinite(worst):
            break
    passed = math.isfinite(worst) and worst <= atol
    return Check(
        "emissions_match",
        passed,
        f"max |PyTorch - ONNX fp32| emission difference {worst:.3g} (tolerance {atol:g})",
        {"max_abs_difference": worst, "tolerance": atol, "windows": len(windows)},
    )


def check_tags(torch_tags: Sequence[Sequence[str]], onnx_tags: Sequence[Sequence[str]]) -> Check:
    """(b) fp32 ONNX word tags equal PyTorch's exactly."""
    words = sum(len(t) for t in torch_tags)
    different_words = sum(
        a != b for ts, os_ in zip(torch_tags, onnx_tags, strict=True) for a, b in zip(ts, os_, strict=True)
    )
    different_sentences = sum(list(a) != list(b) for a, b in zip(torch_tags, onnx_tags, strict=True))
    return Check(
        "tags_match",
        different_sentences == 0,
        f"{different_words} of {words} word tags differ between PyTorch and ONNX fp32 "
        f"({different_sentences} of {len(torch_tags)} sentences)",
        {"words": words, "different_words": different_words, "different_sentences": different_sentences},
    )


def check_int8_f1(gate: GateResult, note: str = "") -> Check:
    """(c) The gate's verdict on the chosen int8 graph (`note` is appended, e.g. why no recipe passed)."""
    message = gate.message() + (f"\n{note}" if note else "")
    return Check("int8_f1", gate.passed and not note, message, gate.to_json())


def check_varied_lengths(tagger: OnnxTagger) -> Check:
    """(d) one batch from a single word to `max_length` subwords, and a sentence longer than a window."""
    vocabulary = ["the", "a", "of", "and", "in", "to", "is", "was", "for", "on"]
    room = tagger.max_length - len(tagger.prefix_ids) - len(tagger.suffix_ids)
    try:
        token = tagger.encode_words(["the"])[0][:1]
        # One subword per word, so the last window holds exactly `max_length` ids, specials included.
        windows = [
            make_windows([token] * count, tagger.prefix_ids, tagger.suffix_ids, tagger.max_length, 0)[0]
            for count in sorted({1, min(2, room), min(7, room), room})
        ]
        feeds = tagger.batch_inputs(windows)
        scores = tagger.emissions(feeds)
        shape_ok = scores.shape == (len(windows), feeds["input_ids"].shape[1], len(tagger.labels))
        finite = bool(np.isfinite(scores).all())
        long_words = [vocabulary[i % len(vocabulary)] for i in range(tagger.max_length * 2 + 3)]
        long_tags = tagger.tag_words([long_words, ["x"]])
        long_ok = len(long_tags[0]) == len(long_words) and len(long_tags[1]) == 1
    except Exception as error:  # any failure to answer is the finding
        return Check(
            "varied_lengths", False, f"the model failed on varied lengths: {type(error).__name__}: {error}"
        )
    subword_lengths = [len(w.input_ids) for w in windows]
    passed = shape_ok and finite and long_ok
    return Check(
        "varied_lengths",
        passed,
        f"batch of window lengths {subword_lengths}: shape {'ok' if shape_ok else 'wrong'}, "
        f"{'finite' if finite else 'NON-FINITE'} scores; a {len(long_words)}-word sentence "
        f"{'tagged word for word' if long_ok else 'lost words'}",
        {
            "window_lengths": subword_lengths,
            "max_length": tagger.max_length,
            "long_sentence_words": len(long_words),
        },
    )


def run_smoke_test(
    torch_tagger: TorchTagger,
    label_names: Sequence[str],
    fp32: OnnxTagger,
    int8: OnnxTagger,
    sample: Sequence[Sequence[str]],
    int8_check: Check,
    *,
    emission_atol: float = 1e-3,
) -> SmokeReport:
    """Run checks (a)-(d).

    Args:
        torch_tagger: The PyTorch reference over the checkpoint.
        label_names: The checkpoint's labels (PyTorch tags are named with these).
        fp32: Tagger over the fp32 ONNX folder.
        int8: Tagger over the int8 ONNX graph.
        sample: Sentences for (a) and (b).
        int8_check: (c), from the gate's verdict on the chosen recipe (`check_int8_f1`).
        emission_atol: Largest accepted emission difference for (a).
    """
    report = SmokeReport()
    report.checks.append(check_labels(label_names, fp32.labels))
    report.checks.append(check_emissions(torch_tagger, fp32, sample, emission_atol))
    report.checks.append(check_tags(torch_tagger.tag_words(sample, label_names), fp32.tag_words(sample)))
    report.checks.append(int8_check)
    report.checks.append(check_varied_lengths(int8))
    return report
