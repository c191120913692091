"""`OnnxTagger` batching and session options: length-grouped batches under a token budget give the
same tags as one window at a time, the budget holds on every onnxruntime call, threads are validated."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ner_lightning.contract import ONNX_DIR
from ner_lightning.errors import ConfigError
from ner_lightning.onnx.predict_cli import main as predict_main
from ner_lightning.onnx.predictor import OnnxTagger, length_batches
from ner_lightning.threads import available_cores, resolve_threads
from tests.onnx.conftest import MAX_LENGTH

WORDS = ["Angela", "Merkel", "met", "Satya", "Nadella", "in", "Berlin", ".", "Nokia", "Tokyo", "x", "!"]


def _sentences(count: int, seed: int = 0) -> list[list[str]]:
    """Sentences of 0 to 4x the window length in words (long ones need several windows)."""
    rng = random.Random(seed)
    return [[rng.choice(WORDS) for _ in range(rng.randint(0, 4 * MAX_LENGTH))] for _ in range(count)]


@given(
    st.lists(st.integers(1, 300), max_size=60),
    st.integers(1, 1000),
    st.integers(1, 40),
)
def test_length_batches_respect_the_budget_and_keep_every_item(
    lengths: list[int], budget: int, max_rows: int
) -> None:
    batches = length_batches(lengths, budget, max_rows)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= max_rows
        assert len(batch) == 1 or len(batch) * longest <= budget
    # Shortest first, so neighbours in a batch have similar lengths.
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(flat)


@pytest.mark.parametrize("family", ["bert", "deberta-v2"])
@pytest.mark.parametrize("crf", [True, False])
def test_batching_gives_the_tags_of_one_window_at_a_time(
    trained_models: dict, family: str, crf: bool
) -> None:
    model_dir = trained_models[(family, crf)] / ONNX_DIR
    sentences = _sentences(40)
    assert any(len(s) > MAX_LENGTH for s in sentences) and any(not s for s in sentences)
    alone = OnnxTagger(model_dir, batch_size=1, threads=1)
    expected = [alone.tag_ids([s])[0] for s in sentences]
    for batch_size, budget in ((64, 1024), (8, 40), (64, 1), (3, 100_000)):
        tagger = OnnxTagger(model_dir, batch_size=batch_size, token_budget=budget, threads=1)
        assert tagger.tag_ids(sentences) == expected, (batch_size, budget)
    # Raw text too: the same entities and offsets whatever the batching.
    texts = [" ".join(s) for s in sentences]
    assert OnnxTagger(model_dir, token_budget=48, threads=1).predict(texts) == alone.predict(texts)


def test_every_onnxruntime_call_stays_within_the_budget(trained_models: dict) -> None:
    tagger = OnnxTagger(trained_models[("bert", True)] / ONNX_DIR, batch_size=16, token_budget=60, threads=1)
    shapes: list[tuple[int, int]] = []
    run = tagger.emissions

    def recording(feeds: dict[str, np.ndarray]) -> np.ndarray:
        shapes.append(feeds["input_ids"].shape)
        return run(feeds)

    tagger.emissions = recording  # type: ignore[method-assign]
    sentences = _sentences(50, seed=1)
    tagger.tag_ids(sentences)
    windows = sum(len(tagger.windows(s)) for s in sentences)
    assert sum(rows for rows, _ in shapes) == windows
    assert all(rows * length <= 60 and rows <= 16 for rows, length in shapes)
    assert len(shapes) < windows / 2, "windows of similar length share a call"


def test_session_options_are_set_deliberately(trained_models: dict) -> None:
    tagger = OnnxTagger(trained_models[("bert", False)] / ONNX_DIR, threads=1)
    options = tagger.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.enable_mem_pattern is False and options.enable_cpu_mem_arena is True


def test_threads_are_validated(
    trained_models: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = trained_models[("bert", False)] / ONNX_DIR
    with pytest.raises(
        ConfigError, match=r"threads must be >= 0, got -1.*Fix: use 0 for every available core"
    ):
        OnnxTagger(model_dir, threads=-1)
    available = available_cores().count
    with caplog.at_level(logging.WARNING, logger="ner_lightning.threads"):
        tagger = OnnxTagger(model_dir, threads=available + 3)
    assert f"--threads {available + 3} is more than the {available} core(s)" in caplog.text
    assert tagger.threads == available
    assert tagger.session.get_session_options().intra_op_num_threads == available
    assert resolve_threads(None)[0] == resolve_threads(0)[0] == available
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cores().count == 1 and OnnxTagger(model_dir).threads == 1


def test_cli_refuses_negative_threads(trained_models: dict, capsys: pytest.CaptureFixture[str]) -> None:
    model_dir: Path = trained_models[("bert", False)] / ONNX_DIR
    assert predict_main(["--model", str(model_dir), "--text", "x", "--threads", "-2"]) == 2
    assert "threads must be >= 0, got -2" in capsys.readouterr().err
    assert predict_main(["--model", str(model_dir), "--text", "x", "--token-budget", "0"]) == 2
    assert "token_budget must be >= 1" in capsys.readouterr().err


class _CallCounter:
    """Wraps an onnxruntime session and records the batch size of every call."""

    def __init__(self, session) -> None:
        self.session, self.rows = session, []

    def run(self, outputs, feeds):
        self.rows.append(len(next(iter(feeds.values()))))
        return self.session.run(outputs, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


def test_a_dynamic_int8_folder_tags_one_window_a_call_so_a_text_never_depends_on_its_batch(
    bert_crf_output: Path, tmp_path: Path
) -> None:
    """Dynamic int8 takes one activation scale per call over the whole batch: by default its folder
    runs one window a call (the gate judges it the same way), fp32 keeps batching, and an explicit
    batch size is honoured."""
    from ner_lightning.onnx.convert import main as convert_main
    from tests.onnx.conftest import TOY_DATASET

    int8_dir = tmp_path / "int8"
    assert (
        convert_main(["--input", str(bert_crf_output), "--output", str(int8_dir), "--data", str(TOY_DATASET)])
        == 0
    )
    sentences = _sentences(12, seed=3)
    int8 = OnnxTagger(int8_dir, threads=1)
    assert int8.batch_size == 1
    int8.session = _CallCounter(int8.session)
    together = int8.tag_words(sentences)
    assert set(int8.session.rows) == {1}
    assert together == [int8.tag_words([s])[0] for s in sentences]
    assert OnnxTagger(bert_crf_output / ONNX_DIR, threads=1).batch_size > 1
    assert OnnxTagger(int8_dir, batch_size=16, threads=1).batch_size == 16
