"""`ner_lightning.onnx.recipes.choose`: the int8 candidate kept follows from the gate's figures alone."""

from __future__ import annotations

import itertools

import pytest

from ner_lightning.onnx.gate import GateResult
from ner_lightning.onnx.recipes import (
    FIRST_TOKEN_COST_RANK,
    MIXED_COST_RANK,
    STATIC_COST_RANK,
    Candidate,
    choose,
    named_recipes,
)


def _gate(drop: float, passed: bool = True) -> GateResult:
    return GateResult(
        verdict="pass" if passed else "fail",
        passed=passed,
        fp32_f1=0.5,
        int8_f1=0.5 - drop,
        drop=drop,
        ci_low=drop - 0.01,
        ci_high=drop + 0.01,
        confidence=0.95,
        resamples=1000,
        seed=13,
        tolerance=0.01,
        sentences=200,
        gold_entities=150,
        min_entities=100,
        words=3000,
        word_tag_agreement=0.99,
    )


def _candidate(
    name: str,
    tier: str,
    drop: float,
    ms: float,
    *,
    passed: bool = True,
    fp32_nodes: int = 0,
    position: int = 0,
) -> Candidate:
    recipe = named_recipes()[name]
    if tier == "first-token":
        recipe = recipe.with_first_token_split()
    if fp32_nodes:
        recipe = recipe.with_fp32_nodes([f"node{i}" for i in range(fp32_nodes)])
    candidate = Candidate(recipe, tier, position, gate=_gate(drop, passed), ms_per_batch=ms)
    candidate.target_met = passed and drop <= 0.005
    return candidate


def test_the_cheapest_candidate_meeting_the_target_wins_whatever_the_timings() -> None:
    """The whole-graph preset in its order, the first-token split, mixed by fp32 nodes, static; a more accurate
    but costlier candidate does not win, and the measured milliseconds, here made to favour every
    other candidate in turn, never decide."""
    candidates = [
        _candidate("dynamic-pc-unfused", "whole-graph", 0.009, ms=100.0, position=0),  # misses the target
        _candidate("dynamic-pc", "whole-graph", 0.004, ms=120.0, position=1),
        _candidate("dynamic-pc-rr", "whole-graph", 0.002, ms=150.0, position=2),
        _candidate("dynamic-pc-unfused", "first-token", 0.001, ms=2.0),
        _candidate("dynamic-pc", "mixed", 0.0, ms=10.0, fp32_nodes=1),
        _candidate("static-pc", "static", -0.01, ms=5.0),
    ]
    assert choose(candidates).recipe.name == "dynamic-pc"
    assert [c.cost_rank for c in candidates] == [
        0,
        1,
        2,
        FIRST_TOKEN_COST_RANK,
        MIXED_COST_RANK + 1,
        STATIC_COST_RANK,
    ]
    assert choose(candidates[3:]).recipe.name == "dynamic-pc-unfused+first-split"
    for timings in itertools.permutations([1.0, 50.0, 100.0, 200.0, 400.0, 800.0]):
        for candidate, ms in zip(candidates, timings, strict=True):
            candidate.ms_per_batch = ms
        assert choose(candidates).recipe.name == "dynamic-pc"


def test_when_none_meets_the_target_the_most_accurate_that_passed_wins() -> None:
    candidates = [
        _candidate("dynamic-pc", "whole-graph", 0.012, ms=100.0),
        _candidate("dynamic-pc-rr", "whole-graph", 0.009, ms=100.0),
        _candidate("dynamic-pc", "mixed", 0.007, ms=130.0, fp32_nodes=2),
        _candidate("static-pc", "static", -0.02, ms=90.0, passed=False),  # fails the gate: never kept
    ]
    assert choose(candidates).recipe.name == "dynamic-pc+fp32x2"


def test_equal_drops_go_to_the_cheaper_then_the_earlier_candidate() -> None:
    candidates = [
        _candidate("dynamic-pc", "mixed", 0.008, ms=1.0, fp32_nodes=4),
        _candidate("dynamic-pc-rr", "whole-graph", 0.008, ms=100.0, position=1),
        _candidate("dynamic-pc", "whole-graph", 0.008 + 1e-12, ms=100.0, position=0),
    ]
    assert choose(candidates) is candidates[2]


def test_no_candidate_passed_is_an_error() -> None:
    with pytest.raises(ValueError, match="no candidate passed"):
        choose([_candidate("dynamic-pc", "whole-graph", 0.05, ms=1.0, passed=False)])
