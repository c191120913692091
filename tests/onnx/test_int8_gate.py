"""The int8 gate's paired bootstrap on real tags (WNUT17 dev), against a plain per-resample reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ner_lightning.data.conll import read_conll
from ner_lightning.onnx.gate import entity_counts, judge
from ner_lightning.onnx.smoke import entity_f1
from ner_lightning.tags import extract_entities


@pytest.fixture(scope="module")
def wnut17_dev(shared_data: Path) -> list[list[str]]:
    """Gold tags of the WNUT17 dev split (1,009 sentences, 835 entities)."""
    return [list(s.tags) for s in read_conll(shared_data / "wnut17" / "emerging.dev.conll")]


def _without_entities(tags: list[list[str]], every: int, offset: int = 0) -> list[list[str]]:
    """A copy of `tags` where every `every`-th entity (counted over the corpus from `offset`) is erased."""
    out, seen = [], 0
    for sentence in tags:
        row = list(sentence)
        for entity in extract_entities(sentence):
            if (seen - offset) % every == 0 and seen >= offset:
                row[entity.start : entity.end] = ["O"] * (entity.end - entity.start)
            seen += 1
        out.append(row)
    return out


def _reference_interval(
    gold, fp32, int8, resamples: int, seed: int, confidence: float
) -> tuple[float, float]:
    """The interval computed the slow, obvious way: one resample at a time, F1 from the resampled tags."""
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(resamples):
        picked = rng.integers(0, len(gold), size=len(gold))
        drops.append(
            entity_f1([gold[i] for i in picked], [fp32[i] for i in picked])
            - entity_f1([gold[i] for i in picked], [int8[i] for i in picked])
        )
    alpha = (1 - confidence) / 2
    low, high = np.quantile(drops, [alpha, 1 - alpha])
    return float(low), float(high)


def test_bootstrap_interval_equals_the_per_resample_reference(wnut17_dev: list[list[str]]) -> None:
    gold = wnut17_dev[:300]
    fp32 = _without_entities(gold, every=3)  # a model that misses a third of the entities
    int8 = _without_entities(fp32, every=5, offset=1)
    result = judge(gold, fp32, int8, resamples=200, seed=7, min_entities=10)
    assert result.fp32_f1 == pytest.approx(entity_f1(gold, fp32))
    assert result.int8_f1 == pytest.approx(entity_f1(gold, int8))
    low, high = _reference_interval(gold, fp32, int8, 200, 7, 0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high))
    assert result.ci_low <= result.drop <= result.ci_high
    assert judge(gold, fp32, int8, resamples=200, seed=7, min_entities=10) == result, "seeded: reproducible"


def test_identical_tags_pass_with_a_zero_interval(wnut17_dev: list[list[str]]) -> None:
    fp32 = _without_entities(wnut17_dev, every=2)
    result = judge(wnut17_dev, fp32, fp32)
    assert (result.verdict, result.passed, result.drop, result.ci_low, result.ci_high) == (
        "pass",
        True,
        0,
        0,
        0,
    )
    assert result.word_tag_agreement == 1.0
    assert result.sentences == len(wnut17_dev)
    assert result.gold_entities == int(entity_counts(wnut17_dev, wnut17_dev)[:, 2].sum()) > 800


def test_a_few_moved_entities_pass_a_real_loss_fails(wnut17_dev: list[list[str]]) -> None:
    gold = wnut17_dev
    fp32 = _without_entities(gold, every=2)
    # Three entities lost: a 1-point point-estimate drop, well inside the noise of ~800 entities.
    few = _without_entities(fp32, every=10**9, offset=0)
    few = _without_entities(few, every=10**9, offset=1)
    few = _without_entities(few, every=10**9, offset=2)
    small = judge(gold, fp32, few, tolerance=0.002)
    assert small.drop > 0.002 and small.ci_low <= 0.002
    assert small.verdict == "pass" and small.passed
    # A quarter of the found entities lost: the whole interval lies above a 1-point tolerance.
    lossy = judge(gold, fp32, _without_entities(fp32, every=4))
    assert lossy.verdict == "fail" and not lossy.passed and lossy.ci_low > 0.01
    assert "significantly above tolerance" in lossy.message()
    assert f"{lossy.gold_entities} gold entities" in lossy.message()


def test_too_small_a_held_out_set_is_said_with_its_count(wnut17_dev: list[list[str]]) -> None:
    gold = wnut17_dev[:40]
    fp32 = _without_entities(gold, every=2)
    result = judge(gold, fp32, fp32, min_entities=100)
    assert result.verdict == "too_small" and result.passed  # no drop at all
    assert result.message().startswith(
        f"held-out set too small to judge ({result.gold_entities} gold entities < 100)"
    )
    worse = judge(gold, fp32, _without_entities(fp32, every=2), min_entities=100)
    assert worse.verdict == "too_small" and not worse.passed, "judged on the point estimate"
