"""`OnnxTagger` and `ner-predict`: torch-free serving, offsets, windowing and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ner_lightning.contract import LABELS_FILE, MODEL_METADATA_FILE, ONNX_DIR
from ner_lightning.errors import ModelError
from ner_lightning.onnx.predict_cli import main as predict_main
from ner_lightning.onnx.predictor import OnnxTagger, split_words
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def model_dir(trained_models: dict) -> Path:
    return trained_models[("bert", True)] / ONNX_DIR


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> OnnxTagger:
    return OnnxTagger(model_dir, batch_size=4)


def test_predictor_and_cli_import_without_torch_or_transformers() -> None:
    code = (
        "import sys, ner_lightning.onnx.predictor, ner_lightning.onnx.predict_cli; "
        "print(' '.join(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'lightning')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


def test_split_words_keeps_offsets() -> None:
    text = "EU rejects @user's call, see https://x.y/z #NER O'Neil."
    words = split_words(text)
    assert all(text[start:end] == word for word, start, end in words)
    assert [w for w, _, _ in words] == [
        "EU",
        "rejects",
        "@user's",
        "call",
        ",",
        "see",
        "https://x.y/z",
        "#NER",
        "O'Neil",
        ".",
    ]


def test_raw_text_gives_word_tags_and_entity_character_spans(tagger: OnnxTagger) -> None:
    text = "Angela Merkel met Satya Nadella in Berlin.  Nokia moved to Tokyo ."
    [tagged] = tagger.predict([text])
    assert [w.text for w in tagged.words] == [w for w, _, _ in split_words(text)]
    assert all(text[w.start : w.end] == w.text for w in tagged.words)
    assert tagged.entities, "the trained tiny model finds some entity here"
    for entity in tagged.entities:
        assert text[entity.start : entity.end] == entity.text
        assert tagged.words[entity.start_word].tag.endswith(entity.type)
    # Same tags from pre-tokenized input and from the raw text.
    words = [w.text for w in tagged.words]
    assert [w.tag for w in tagger.predict_tokens([words])[0].words] == [w.tag for w in tagged.words]


def test_batching_does_not_change_tags(model_dir: Path, tagger: OnnxTagger) -> None:
    sentences = [
        ["Nokia", "moved", "to", "Tokyo", "."],
        ["x"],
        ["Angela", "Merkel", "met", "Satya", "Nadella"] * 5,
    ]
    one_by_one = [tagger.tag_words([s])[0] for s in sentences]
    assert OnnxTagger(model_dir, batch_size=32).tag_words(sentences) == one_by_one


def test_empty_whitespace_and_long_documents(tagger: OnnxTagger) -> None:
    empty, blank = tagger.predict(["", " \t\n "])
    assert empty.words == [] and empty.entities == [] and blank.words == []
    document = ("Angela Merkel met Satya Nadella in Berlin . " * 1200)[:50_000]
    [tagged] = tagger.predict([document])
    assert len(tagged.words) == len(split_words(document)) > 9000
    assert all(document[e.start : e.end] == e.text for e in tagged.entities)
    with pytest.raises(TypeError, match="list of texts"):
        tagger.predict("a single string")  # type: ignore[arg-type]


def test_model_folder_problems_are_clear(model_dir: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    with pytest.raises(ModelError, match="does not exist"):
        OnnxTagger(tmp_path / "nowhere")
    labels = json.loads((broken / LABELS_FILE).read_text())
    (broken / LABELS_FILE).write_text(json.dumps(labels[:-1]))
    with pytest.raises(ModelError, match="disagrees with the labels recorded"):
        OnnxTagger(broken)
    (broken / LABELS_FILE).unlink()
    with pytest.raises(ModelError, match=r"labels\.json is missing"):
        OnnxTagger(broken)
    (broken / LABELS_FILE).write_text("not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        OnnxTagger(broken)
    metadata = json.loads((broken / MODEL_METADATA_FILE).read_text())
    (broken / LABELS_FILE).write_text(json.dumps(metadata["labels"]))
    metadata["decoder"] = {"name": "beam_search", "args": {}}
    (broken / MODEL_METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(
        ModelError, match="unknown decoder 'beam_search'; available decoders: argmax, crf_viterbi"
    ):
        OnnxTagger(broken)
    # A folder of metadata format 1 (no decoder section) decodes by use_crf and its crf section.
    del metadata["decoder"]
    metadata["crf"] = None
    (broken / MODEL_METADATA_FILE).write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="no crf section"):
        OnnxTagger(broken)


def test_cli_text_and_jsonl(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text_file = tmp_path / "in.txt"
    text_file.write_text(
        "Angela Merkel met Satya Nadella in Berlin.\n   \n\nNokia moved to Tokyo.\n", encoding="utf-8"
    )
    out = tmp_path / "out.jsonl"
    assert predict_main(["--model", str(model_dir), "--input", str(text_file), "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (
        len(lines) == 4
        and lines[1]["warning"] == "whitespace-only document"
        and lines[2]["warning"] == "empty document"
    )
    assert "line 2: whitespace-only document" in capsys.readouterr().err
    assert [t["text"] for t in lines[3]["tokens"]] == ["Nokia", "moved", "to", "Tokyo", "."]

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        json.dumps({"id": "a", "text": "Nokia moved to Tokyo ."})
        + "\n\n"
        + json.dumps({"id": "b", "tokens": ["Tokyo", "!"]})
        + "\n",
        encoding="utf-8",
    )
    assert predict_main(["--model", str(model_dir), "--input", str(jsonl), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["a", "b"] and records[1]["tokens"][0]["start"] is None

    assert predict_main(["--model", str(model_dir), "--text", "Tokyo"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"][0]["text"] == "Tokyo"


def test_cli_bad_input(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("fine line\ncafé au lait\n".encode("latin-1"))
    out = tmp_path / "out.jsonl"
    assert predict_main(["--model", str(model_dir), "--input", str(latin1), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{latin1}:2" in err and "not UTF-8" in err and "iconv" in err
    assert not out.exists() and list(tmp_path.glob(".out.jsonl.*")) == []

    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    assert predict_main(["--model", str(model_dir), "--input", str(bad_json)]) == 2
    assert f"{bad_json}:2" in capsys.readouterr().err

    assert predict_main(["--model", str(model_dir), "--input", str(tmp_path / "missing.txt")]) == 2
    assert predict_main(["--model", str(tmp_path), "--text", "x"]) == 2
    assert "ner_model.json is missing" in capsys.readouterr().err


def test_cli_runs_as_a_module_in_a_subprocess(model_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ner_lightning.onnx.predict_cli", "--model", str(model_dir), "--input", "-"],
        input="Nokia moved to Tokyo .\n",
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(out.stdout)["tokens"]) == 5


@pytest.mark.parametrize(
    ("stdin", "expected_words"),
    [
        ('{"id": 7, "text": "Nokia moved to Tokyo ."}\n', 5),  # JSONL detected from the content
        ("\n{ not json, just braces } here\n", 8),  # looks like JSON but is not: plain text
    ],
)
def test_auto_format_sniffs_stdin(model_dir: Path, stdin: str, expected_words: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ner_lightning.onnx.predict_cli", "--model", str(model_dir), "--input", "-"],
        input=stdin,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    results = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(results[-1]["tokens"]) == expected_words
    if stdin.startswith("{"):
        assert results[0]["id"] == 7
