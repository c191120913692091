"""The int8 accuracy gate: is the int8 model's entity F1 significantly worse than fp32's?

Both models tag every held-out sentence (the test split, else validation; no sampling). The gate
reports the entity F1 of each, the word-tag agreement between them, and the F1 drop
`fp32 - int8` with a paired bootstrap confidence interval: `resamples` times, sentences are drawn
with replacement (the same draw for both models, hence *paired*), the entity counts of the drawn
sentences are summed and both F1s recomputed; the interval is the `(1 - confidence) / 2` and
`(1 + confidence) / 2` percentiles of the resampled drops. The generator is seeded, so a report is
reproducible.

Rule (verdicts):
- `fail`: the interval's lower bound is above `tolerance`. The drop is then larger than the
  tolerance with about `(1 + confidence) / 2` one-sided confidence (97.5 % at the default 0.95): a
  significant loss, not a handful of entities moving.
- `pass`: otherwise, when the held-out set holds at least `min_entities` gold entities.
- `too_small`: fewer gold entities than `min_entities` (default 100; also when no gold tags exist).
  An interval over so few entities says little, so the gate falls back to the point estimate:
  the check passes only when `drop <= tolerance`, and its message starts with
  "held-out set too small to judge (N gold entities < min)" so nobody mistakes it for a judgement.

The recipe search (`ner_lightning.onnx.recipes`) uses the same verdict to accept a candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ner_lightning.tags import extract_entities

#: Gate defaults (also the `ner-convert` defaults).
DEFAULT_TOLERANCE = 0.01
DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 13
DEFAULT_MIN_ENTITIES = 100


def entity_counts(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> np.ndarray:
    """Per sentence `[true positives, predicted entities, gold entities]` (`[n, 3]` int64)."""
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for row, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted, strict=True)):
        gold_set = set(extract_entities(gold_tags))
        predicted_set = set(extract_entities(predicted_tags))
        counts[row] = (len(gold_set & predicted_set), len(predicted_set), len(gold_set))
    return counts


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Micro entity F1 of summed `[..., 3]` counts (0 where nothing was found), `2tp / (pred + gold)`."""
    tp, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = predicted + gold
    return np.where(tp > 0, 2.0 * tp / np.maximum(denominator, 1), 0.0)


@dataclass(frozen=True)
class GateResult:
    """The gate's figures for one int8 candidate (all F1 values absolute, 0.01 = 1 point).

    Attributes:
        verdict: `pass`, `fail` or `too_small` (see the module docstring).
        passed: Whether the check passes.
        fp32_f1: Entity F1 of fp32 on the held-out sentences.
        int8_f1: Entity F1 of int8.
        drop: `fp32_f1 - int8_f1`.
        ci_low: Lower bound of the drop's bootstrap interval.
        ci_high: Upper bound.
        confidence: Two-sided coverage of the interval.
        resamples: Bootstrap resamples.
        seed: Generator seed.
        tolerance: Largest accepted drop.
        sentences: Held-out sentences judged.
        gold_entities: Gold entities among them.
        min_entities: Fewest gold entities for a statistical judgement.
        words: Words judged.
        word_tag_agreement: Share of words that int8 tags exactly as fp32 does.
    """

    verdict: str
    passed: bool
    fp32_f1: float
    int8_f1: float
    drop: float
    ci_low: float
    ci_high: float
    confidence: float
    resamples: int
    seed: int
    tolerance: float
    sentences: int
    gold_entities: int
    min_entities: int
    words: int
    word_tag_agreement: float

    def message(self) -> str:
        """One line for logs and `[PASS]/[FAIL] int8_f1: ...`."""
        figures = (
            f"entity F1 fp32 {self.fp32_f1:.4f}, int8 {self.int8_f1:.4f}, drop {self.drop:+.4f} "
            f"({self.confidence:.0%} CI {self.ci_low:+.4f}..{self.ci_high:+.4f}, tolerance {self.tolerance:g}); "
            f"{self.sentences} sentences, {self.gold_entities} gold entities, "
            f"word-tag agreement {self.word_tag_agreement:.2%}"
        )
        if self.verdict == "too_small":
            return (
                f"held-out set too small to judge ({self.gold_entities} gold entities < {self.min_entities}): "
                f"judged on the point estimate alone; {figures}"
            )
        if self.verdict == "fail":
            return f"drop significantly above tolerance (CI lower bound > {self.tolerance:g}): {figures}"
        return figures

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON numbers (plus the verdict)."""
        return asdict(self)


def judge(
    gold: Sequence[Sequence[str]],
    fp32_tags: Sequence[Sequence[str]],
    int8_tags: Sequence[Sequence[str]],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    min_entities: int = DEFAULT_MIN_ENTITIES,
) -> GateResult:
    """Judge int8 against fp32 on the same held-out sentences (see the module docstring for the rule).

    Args:
        gold: Gold tags per sentence.
        fp32_tags: fp32 tags per sentence.
        int8_tags: int8 tags per sentence.
        tolerance: Largest accepted F1 drop (absolute).
        confidence: Two-sided coverage of the bootstrap interval.
        resamples: Bootstrap resamples.
        seed: Generator seed.
        min_entities: Fewest gold entities for a statistical judgement.
    """
    fp32_counts = entity_counts(gold, fp32_tags)
    int8_counts = entity_counts(gold, int8_tags)
    fp32_f1 = float(f1_from_counts(fp32_counts.sum(axis=0)))
    int8_f1 = float(f1_from_counts(int8_counts.sum(axis=0)))
    drop = fp32_f1 - int8_f1
    ci_low, ci_high = bootstrap_interval(fp32_counts, int8_counts, confidence, resamples, seed)
    gold_entities = int(fp32_counts[:, 2].sum())
    words = sum(len(tags) for tags in fp32_tags)
    agreement = sum(
        a == b for fs, is_ in zip(fp32_tags, int8_tags, strict=True) for a, b in zip(fs, is_, strict=True)
    )
    if gold_entities < min_entities:
        verdict, passed = "too_small", drop <= tolerance + 1e-12
    elif ci_low > tolerance + 1e-12:
        verdict, passed = "fail", False
    else:
        verdict, passed = "pass", True
    return GateResult(
        verdict=verdict,
        passed=passed,
        fp32_f1=fp32_f1,
        int8_f1=int8_f1,
        drop=drop,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        tolerance=tolerance,
        sentences=len(gold),
        gold_entities=gold_entities,
        min_entities=min_entities,
        words=words,
        word_tag_agreement=agreement / words if words else 1.0,
    )


def bootstrap_interval(
    fp32_counts: np.ndarray, int8_counts: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of the F1 drop over paired sentence resamples (`(0, 0)` without sentences).

    Resample `r` draws `n` sentence indices with replacement from `default_rng(seed)`; the drawn
    sentences' counts are summed for both models and the drop `F1(fp32) - F1(int8)` recomputed.
    """
    count = len(fp32_counts)
    if count == 0 or resamples < 1:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    drops = np.empty(resamples)
    # Chunks bound the [chunk, n] index matrix on large held-out sets.
    chunk = max(1, 2_000_000 // count)
    for begin in range(0, resamples, chunk):
        indices = rng.integers(0, count, size=(min(chunk, resamples - begin), count))
        drops[begin : begin + len(indices)] = f1_from_counts(
            fp32_counts[indices].sum(axis=1)
        ) - f1_from_counts(int8_counts[indices].sum(axis=1))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(drops, [alpha, 1.0 - alpha])
    return float(low), float(high)
