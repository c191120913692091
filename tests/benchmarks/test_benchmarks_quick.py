"""Each benchmark's `--quick` mode runs end to end on the tiny backbone and writes its tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.corpus import prepare_dataset
from benchmarks.report import markdown_table, write_results
from benchmarks.scoring import entity_scores
from benchmarks.train_throughput import summarize
from ner_lightning.data.records import load_dataset_folder
from ner_lightning.errors import DataError
from tests.conftest import REPO_ROOT


def run_quick(module: str, results: Path) -> dict:
    """Run `python -m <module> --quick true` as a real subprocess and return its JSON results."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick", "true", "--results_dir", str(results)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    name = module.rsplit(".", 1)[1] + "_quick"
    assert (results / f"{name}.md").read_text(encoding="utf-8").startswith("# ")
    return json.loads((results / f"{name}.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_train_throughput_quick_compares_both_sides(tmp_path: Path) -> None:
    payload = run_quick("benchmarks.train_throughput", tmp_path)
    runs = payload["tables"]["Runs (alternating order)"]
    # Two repetitions, alternating order: A B then B A.
    assert [row["side"] for row in runs] == ["baseline", "project", "project", "baseline"]
    for row in runs:
        assert row["steps"] == 5
        assert 0 < row["real_tokens"] <= row["padded_tokens"]
        assert row["tokens_per_second"] > 0 and row["peak_rss_mib"] > 0
    summary = {row["side"]: row for row in payload["tables"]["Summary"]}
    # Length grouping must waste less of the batch on padding than random batches.
    assert summary["project"]["padding_ratio"] < summary["baseline"]["padding_ratio"]
    f1 = payload["tables"]["Dev entity F1 after 1 epoch(s)"]
    assert [row["side"] for row in f1] == ["baseline", "project"]
    assert all(0.0 <= row["dev_f1"] <= 1.0 for row in f1)


@pytest.mark.slow
def test_quality_quick_scores_three_variants_over_two_seeds(tmp_path: Path) -> None:
    payload = run_quick("benchmarks.quality", tmp_path)
    summary = payload["tables"]["Test entity F1"]
    assert [row["variant"] for row in summary] == ["hf_baseline", "project", "project_crf"]
    assert all(row["seeds"] == 2 for row in summary)
    per_type = {row["type"] for row in payload["tables"]["Test F1 per entity type (mean over seeds)"]}
    assert per_type == {"LOC", "ORG", "PER"}


@pytest.mark.slow
def test_scaling_quick_measures_each_point(tmp_path: Path) -> None:
    payload = run_quick("benchmarks.scaling", tmp_path)
    grid = payload["tables"]["Grid"]
    assert [(row["batch_size"], row["length"]) for row in grid] == [(2, 16), (2, 32)]
    for row in grid:
        assert row["tokens"] == row["batch_size"] * row["length"]
        assert row["train_step_ms"] > 0 and row["inference_ms"] > 0
        assert row["train_peak_rss_mib"] >= row["inference_peak_rss_mib"] > 0


def test_scores_count_truncated_words_as_outside() -> None:
    gold = [["B-PER", "O", "B-LOC"]]
    # The model never saw the last word (truncated): its entity is a miss, not ignored.
    scores = entity_scores(gold, [["B-PER", "O"]])
    assert scores["precision"] == 1.0
    assert scores["recall"] == 0.5
    assert scores["per_type"]["LOC"]["f1"] == 0.0


def test_conll_folder_is_converted_to_a_dataset_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "mytrain.conll").write_text("Paris\tB-location\nis\tO\n \nBob\tB-person\n", encoding="utf-8")
    (corpus / "my.dev.conll").write_text("Bob\tB-person\n", encoding="utf-8")
    folder = prepare_dataset(corpus, tmp_path / "scratch")
    dataset = load_dataset_folder(folder)
    assert [e.tokens for e in dataset.splits["train"]] == [("Paris", "is"), ("Bob",)]
    assert "test" not in dataset.splits
    # The corpus folder is read, never written.
    assert sorted(p.name for p in corpus.iterdir()) == ["my.dev.conll", "mytrain.conll"]


def test_corpus_without_a_dev_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train.conll").write_text("a\tO\n", encoding="utf-8")
    with pytest.raises(DataError, match="validation"):
        prepare_dataset(tmp_path, tmp_path / "scratch")


def test_summary_takes_the_median_of_paired_ratios(tmp_path: Path) -> None:
    rows = []
    for repetition, (base, project) in enumerate([(100.0, 150.0), (100.0, 120.0), (50.0, 100.0)], 1):
        for side, speed in (("baseline", base), ("project", project)):
            rows.append(
                {
                    "repetition": repetition,
                    "side": side,
                    "tokens_per_second": speed,
                    "real_tokens": 90,
                    "padded_tokens": 100,
                    "peak_rss_mib": 10.0,
                }
            )
    summary, ratio = summarize(rows)
    assert ratio == 1.5  # ratios 1.5, 1.2, 2.0
    md, js = write_results(
        "t", "T", {"S": (summary, ["side", "median_ratio_vs_baseline"])}, {"x": 1}, tmp_path
    )
    assert "| project | 1.5 |" in md.read_text(encoding="utf-8")
    assert json.loads(js.read_text(encoding="utf-8"))["conditions"] == {"x": 1}
    assert markdown_table([{"a": None}], ["a"]).endswith("|  |\n")
