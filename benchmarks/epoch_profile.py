"""Where a training epoch's time goes: the real `fit` command under Lightning's SimpleProfiler.

One process runs `python -m ner_lightning fit` in-process (`ner_lightning.cli.cli_main`) with the
shipped configs (`base.yaml` + `cpu.yaml`: MLflow logger into the output folder, progress lines,
validation, checkpoints, test after fit) and `--trainer.profiler simple`, then groups the
profiler's actions:

- data loading + collation (`train_dataloader_next`; then split by timing the collator alone on
  the same batches after the run),
- forward + loss (`training_step`), backward, gradient clipping, the AdamW update (what
  `optimizer_step` spends outside the nested actions), the learning-rate scheduler,
- Lightning hooks (every callback and module hook run per training batch or epoch),
- validation (its batches, decode, metric and hooks), checkpoint saving,
- the rest of the epoch: Lightning's loop bookkeeping and step logging (`self.log`, the logger's
  writes every `log_every_n_steps`), which the profiler does not time apart.

The same process then times a bare training step (forward, loss, backward, AdamW; no Lightning)
over the first `bare_steps` training batches: the distance between the epoch's training tokens/s
and the bare step's is what the loop costs.

    python -m benchmarks.epoch_profile --quick true
    python -m benchmarks.epoch_profile --corpus <dataset folder>

Writes `benchmarks/results/epoch_profile[_quick].{md,json}`.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from typing import Any

from benchmarks.corpus import prepare_dataset
from benchmarks.measure import machine_description, peak_rss_mib
from benchmarks.report import RESULTS_DIR, write_results
from benchmarks.train_throughput import MINILM, QUICK_BACKBONE, QUICK_CORPUS, REPO_ROOT, WNUT17
from benchmarks.worker import run_in_subprocess

CONFIGS = [REPO_ROOT / "configs" / "train" / "base.yaml", REPO_ROOT / "configs" / "train" / "cpu.yaml"]
EPOCH = "run_training_epoch"
#: Profiler actions nested inside `optimizer_step` (the closure runs forward, backward and hooks in it).
_IN_OPTIMIZER_STEP = (
    "SingleDeviceStrategy.training_step",
    "SingleDeviceStrategy.backward",
    "configure_gradient_clipping",
    "optimizer_zero_grad",
    ".on_before_backward",
    ".on_after_backward",
    ".on_before_optimizer_step",
    ".on_before_zero_grad",
)
_VALIDATION_WORDS = ("val_next", "validation_step", "on_validation", "val_dataloader")
#: Hooks run per training batch (inside the epoch).
_BATCH_HOOK_WORDS = (
    "on_train_batch",
    "on_before_",
    "on_after_backward",
    "on_after_batch_transfer",
    "transfer_batch_to_device",
    "batch_to_device",
)
_TEST_WORDS = ("test_next", "test_step", "on_test_epoch_end", "on_test_batch", "test_dataloader")
ROW_COLUMNS = ["part", "seconds", "share_of_epoch", "ms_per_step", "calls"]


def _total(totals: dict[str, tuple[float, int]], predicate: Any) -> tuple[float, int]:
    chosen = [value for name, value in totals.items() if predicate(name)]
    return sum(seconds for seconds, _ in chosen), max((calls for _, calls in chosen), default=0)


def _ends(*suffixes: str) -> Any:
    return lambda name: any(name.endswith(suffix) for suffix in suffixes)


def _has(*words: str) -> Any:
    return lambda name: any(word in name for word in words)


def group_actions(durations: dict[str, tuple[float, int]], steps: int) -> list[dict[str, Any]]:
    """Group SimpleProfiler actions into the parts of the training epoch(s), then what runs after them.

    Inside `run_training_epoch` (Lightning runs validation inside it): the leaf actions of a step,
    the per-batch hooks, validation, and the rest of the epoch (loop bookkeeping and logging, which
    the profiler does not time apart). After it: the epoch-end hooks (checkpoint saving among them)
    and the test scoring `fit` runs at the end.

    Args:
        durations: Action name -> (total seconds, calls), from `SimpleProfiler.recorded_durations`.
        steps: Optimizer steps of the epoch(s) (for milliseconds per step).

    Returns:
        One row per part (`part`, `seconds`, `share_of_epoch`, `ms_per_step`, `calls`).
    """
    epoch, _ = _total(durations, lambda name: name == EPOCH)
    inside: dict[str, tuple[float, int]] = {
        "data loading + collation": _total(durations, _ends("train_dataloader_next")),
        "forward + loss (training_step)": _total(durations, _ends("SingleDeviceStrategy.training_step")),
        "backward": _total(durations, _ends("SingleDeviceStrategy.backward")),
        "gradient clipping": _total(durations, _ends("configure_gradient_clipping")),
        "zero_grad": _total(durations, _ends("optimizer_zero_grad")),
    }
    step_total, step_calls = _total(durations, _ends(".optimizer_step"))
    nested, _ = _total(
        durations, lambda name: not name.endswith(".optimizer_step") and _has(*_IN_OPTIMIZER_STEP)(name)
    )
    inside["AdamW update (optimizer_step less nested)"] = (step_total - nested, step_calls)
    inside["learning-rate scheduler"] = _total(durations, _ends("lr_scheduler_step"))
    inside["Lightning hooks per training batch (callbacks + module)"] = _total(
        durations, lambda name: name.startswith("[") and _has(*_BATCH_HOOK_WORDS)(name)
    )
    inside["validation (batches, decode, metric, hooks)"] = _total(durations, _has(*_VALIDATION_WORDS))
    known = sum(seconds for seconds, _ in inside.values())
    inside["rest of the epoch (loop bookkeeping, self.log, logger writes)"] = (epoch - known, 0)
    inside["epoch total (run_training_epoch)"] = (epoch, 1)
    after = {
        "after the epoch: checkpoint saving (best + last)": _total(
            durations, lambda name: name == "save_checkpoint"
        ),
        "after the epoch: epoch-end hooks besides saving": (
            _total(durations, _has("on_train_epoch_end"))[0]
            - _total(durations, lambda name: name == "save_checkpoint")[0],
            _total(durations, _has("on_train_epoch_end"))[1],
        ),
        "after fit: test scoring (test_after_fit)": _total(durations, _has(*_TEST_WORDS)),
    }
    return [
        {
            "part": part,
            "seconds": seconds,
            "share_of_epoch": seconds / epoch if epoch else 0.0,
            "ms_per_step": 1000 * seconds / steps if steps else 0.0,
            "calls": calls,
        }
        for part, (seconds, calls) in {**inside, **after}.items()
    ]


def top_actions(durations: dict[str, tuple[float, int]], count: int = 25) -> list[dict[str, Any]]:
    """The `count` profiler actions with the most total time (action, seconds, calls)."""
    ranked = sorted(durations.items(), key=lambda item: -item[1][0])[:count]
    return [{"action": name, "seconds": seconds, "calls": calls} for name, (seconds, calls) in ranked]


def _time_collation(datamodule: Any) -> dict[str, float]:
    """Seconds to fetch the training windows of one epoch (sampler + dataset) and to collate them."""
    loader = datamodule.train_dataloader()
    fetch = collate = 0.0
    for indices in loader.batch_sampler:
        started = time.perf_counter()
        items = [loader.dataset[i] for i in indices]
        middle = time.perf_counter()
        loader.collate_fn(items)
        fetch += middle - started
        collate += time.perf_counter() - middle
    return {"fetch_seconds": fetch, "collate_seconds": collate}


def _bare_steps(model: Any, datamodule: Any, steps: int, learning_rate: float) -> dict[str, float]:
    """Tokens/s of forward + loss + backward + AdamW over the first `steps` training batches (collated first).

    The first step (AdamW allocating its state) is left out of the timing.
    """
    import torch

    batches = []
    for batch in datamodule.train_dataloader():
        batches.append(batch)
        if len(batches) == steps:
            break
    # The same AdamW kernel as the model's own optimizer (fused where `configure_optimizers` fuses it).
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, fused=model._fused_optimizer())
    model.train()
    tokens, seconds = 0, 0.0
    for index, batch in enumerate(batches):
        started = time.perf_counter()
        loss = model.loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index > 0:
            seconds += time.perf_counter() - started
            tokens += int(batch["attention_mask"].sum())
    return {"bare_steps": max(len(batches) - 1, 0), "bare_tokens": tokens, "bare_seconds": seconds}


def profile_fit(data_dir: str, args: list[str], bare_steps: int, learning_rate: float) -> dict[str, Any]:
    """Run `fit` in this process with the SimpleProfiler; return the grouped parts and the bare-step timing.

    The entry point `benchmarks.worker` calls (one process per profile).
    """
    from ner_lightning.cli import cli_main

    with tempfile.TemporaryDirectory(prefix="ner-bench-profile-") as output_dir:
        started = time.perf_counter()
        cli = cli_main(
            [
                "fit",
                *[arg for config in CONFIGS for arg in ("--config", str(config))],
                "--data.data_dir",
                data_dir,
                "--output_dir",
                output_dir,
                "--trainer.profiler",
                "simple",
                *args,
            ]
        )
        wall = time.perf_counter() - started
        recorded = cli.trainer.profiler.recorded_durations
        durations = {name: (sum(values), len(values)) for name, values in recorded.items()}
        steps = cli.trainer.global_step
        collation = _time_collation(cli.datamodule)
        train_tokens = sum(int(b["attention_mask"].sum()) for b in cli.datamodule.train_dataloader())
        bare = _bare_steps(cli.model, cli.datamodule, bare_steps, learning_rate)
    return {
        "wall_seconds": wall,
        "steps": steps,
        "train_tokens_per_epoch": train_tokens,
        "durations": durations,
        **collation,
        **bare,
        "peak_rss_mib": peak_rss_mib(),
    }


def main(
    corpus: str = str(WNUT17),
    backbone: str = MINILM,
    epochs: int = 1,
    batch_size: int = 16,
    max_length: int = 128,
    learning_rate: float = 1e-4,
    threads: int = 1,
    bare_steps: int = 40,
    quick: bool = False,
    results_dir: str = str(RESULTS_DIR),
    timeout: float | None = 3600.0,
) -> dict[str, Any]:
    """Profile `fit` for `epochs` epoch(s), time the bare step, write the tables.

    Args:
        corpus: Dataset folder, or a folder of CoNLL files (converted to a scratch folder).
        backbone: Pretrained backbone folder or `pkg:` reference.
        epochs: Training epochs profiled.
        batch_size: Sentences per optimizer step.
        max_length: Subwords per window.
        learning_rate: Peak AdamW learning rate.
        threads: `--threads` of the run.
        bare_steps: Training batches of the bare-step timing.
        quick: Smoke check on the tiny backbone and toy dataset; writes `epoch_profile_quick`.
        results_dir: Folder for `epoch_profile[_quick].{md,json}`.
        timeout: Seconds allowed for the run.

    Returns:
        The grouped rows and the summary figures.
    """
    if quick:
        corpus, backbone, batch_size, max_length, bare_steps = (
            str(QUICK_CORPUS),
            str(QUICK_BACKBONE),
            4,
            64,
            3,
        )
    args = [
        f"--model.backbone={backbone}",
        f"--trainer.max_epochs={epochs}",
        f"--data.batch_size={batch_size}",
        f"--data.max_length={max_length}",
        f"--model.learning_rate={learning_rate}",
        f"--threads={threads}",
        "--progress_log.mode=always",
        "--early_stopping.enabled=false",
        "--trainer.num_sanity_val_steps=0",
    ]
    with tempfile.TemporaryDirectory(prefix="ner-bench-data-") as scratch:
        data_dir = prepare_dataset(corpus, scratch)
        kwargs = {
            "data_dir": str(data_dir),
            "args": args,
            "bare_steps": bare_steps,
            "learning_rate": learning_rate,
        }
        report = run_in_subprocess("benchmarks.epoch_profile:profile_fit", kwargs, timeout)
    durations = {name: (float(seconds), int(calls)) for name, (seconds, calls) in report["durations"].items()}
    rows = group_actions(durations, report["steps"])
    by_part = {row["part"]: row for row in rows}
    loading = by_part["data loading + collation"]
    collation_rows = [
        {"part": "fetch windows (sampler + dataset)", "seconds": report["fetch_seconds"]},
        {"part": "collate (pad + stack)", "seconds": report["collate_seconds"]},
        {
            "part": "train_dataloader_next in the profiled epoch(s)",
            "seconds": loading["seconds"] / max(epochs, 1),
        },
    ]
    epoch_seconds = by_part["epoch total (run_training_epoch)"]["seconds"]
    validation = by_part["validation (batches, decode, metric, hooks)"]["seconds"]
    tokens = report["train_tokens_per_epoch"] * epochs
    loop_rate = tokens / (epoch_seconds - validation) if epoch_seconds > validation else 0.0
    bare_rate = report["bare_tokens"] / report["bare_seconds"] if report["bare_seconds"] else 0.0
    compute = sum(
        by_part[name]["seconds"]
        for name in (
            "forward + loss (training_step)",
            "backward",
            "gradient clipping",
            "zero_grad",
            "AdamW update (optimizer_step less nested)",
        )
    )
    summary = [
        {
            "figure": "training tokens/s of the epoch (validation excluded)",
            "value": loop_rate,
        },
        {"figure": "bare step tokens/s (forward, loss, backward, AdamW; same batches)", "value": bare_rate},
        {"figure": "bare step / loop", "value": bare_rate / loop_rate if loop_rate else None},
        {
            "figure": "share of the training part in forward/backward/clipping/AdamW",
            "value": compute / (epoch_seconds - validation) if epoch_seconds > validation else None,
        },
        {"figure": "optimizer steps", "value": report["steps"]},
        {
            "figure": "whole command wall seconds (load, tokenize, fit, test after fit)",
            "value": report["wall_seconds"],
        },
    ]
    conditions = {
        "command": "python -m benchmarks.epoch_profile " + shlex.join(sys.argv[1:]),
        "corpus": corpus,
        "fit arguments": " ".join(["--config", *map(str, CONFIGS), *args]),
        "bare_steps": bare_steps,
        "peak_rss_mib": report["peak_rss_mib"],
        **machine_description(),
    }
    tables = {
        "Where the epoch's time goes": (rows, ROW_COLUMNS),
        "Data loading, one epoch of batches timed apart": (collation_rows, ["part", "seconds"]),
        "Loop against the bare step": (summary, ["figure", "value"]),
        "Profiler actions with the most time (nested actions overlap)": (
            top_actions(durations),
            ["action", "seconds", "calls"],
        ),
    }
    name = "epoch_profile_quick" if quick else "epoch_profile"
    md_path, _ = write_results(name, "Epoch profile of `fit`", tables, conditions, results_dir)
    print(md_path.read_text(encoding="utf-8"))
    return {"rows": rows, "summary": summary, "report": report}


if __name__ == "__main__":
    from jsonargparse import auto_cli

    auto_cli(main)
