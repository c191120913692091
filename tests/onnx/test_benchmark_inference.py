"""`benchmarks/inference.py --quick`: the HF pipeline and the two ONNX sides on a tiny model, texts in,
entities out, with the profiles and the budget sweep."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.inference import (
    FP32_SIDE,
    HF_SIDE,
    INT8_SIDE,
    Entity,
    hf_token_classifier,
    join_words,
    main,
    word_tags,
)
from ner_lightning.contract import BEST_CHECKPOINT, CHECKPOINT_DIR
from tests.onnx.conftest import TOY_DATASET


def test_word_tags_map_character_entities_onto_gold_words() -> None:
    text, spans = join_words(["EU", "rejects", "New", "York", "'s", "call"])
    assert text == "EU rejects New York 's call"
    entities = [Entity("ORG", 0, 2), Entity("LOC", text.index("New"), text.index("York") + 4)]
    assert word_tags(spans, entities) == ["B-ORG", "O", "B-LOC", "I-LOC", "O", "O"]
    # An entity that covers part of a word tags that word (HF splits "'s" off differently).
    assert word_tags(spans, [Entity("PER", text.index("'s") + 1, text.index("'s") + 2)])[4] == "B-PER"


def test_hf_side_holds_the_checkpoint_weights(trained_models: dict) -> None:
    import torch

    from ner_lightning.model.module import TokenClassifier

    model = TokenClassifier.load_checkpoint(
        trained_models[("bert", False)] / CHECKPOINT_DIR / BEST_CHECKPOINT
    ).eval()
    ids = torch.tensor([[2, 11, 12, 13, 3], [2, 14, 15, 3, 0]])
    mask = (ids != 0).long()
    with torch.inference_mode():
        logits = hf_token_classifier(model)(input_ids=ids, attention_mask=mask).logits
        emissions = model.emissions(ids, mask, None)
    torch.testing.assert_close(logits, emissions)


def test_inference_benchmark_quick(trained_models: dict, tmp_path: Path) -> None:
    checkpoint = trained_models[("bert", True)] / CHECKPOINT_DIR / BEST_CHECKPOINT
    result = main(
        [
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(TOY_DATASET),
            "--threads",
            "1",
            "--quick",
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert [row["side"] for row in result["rows"]] == [HF_SIDE, FP32_SIDE, INT8_SIDE]
    payload = json.loads((tmp_path / "inference_quick.json").read_text(encoding="utf-8"))
    rows = payload["tables"][next(iter(payload["tables"]))]
    assert rows[0]["x_b1"] == 1.0 and all(
        row["sent_per_s_b32"] > 0 and row["p95_ms_b1"] >= row["p50_ms_b1"] for row in rows
    )
    assert all(0.0 <= row["f1"] <= 1.0 for row in rows)
    stages = result["stages"]
    assert {(row["side"], row["batch"]) for row in stages} == {
        (side, batch) for side in (FP32_SIDE, INT8_SIDE) for batch in (1, 32)
    }
    assert all(row["session.run %"] > 0 for row in stages)
    assert all(any(key.startswith("MatMul") for key in row) for row in result["operators"])
    assert {row["token_budget"] for row in result["sweep"]} == {64, 128}
    text = (tmp_path / "inference_quick.md").read_text(encoding="utf-8")
    assert "int8 vs HF" in text and "cpu_isa" in text
