"""Export (callback) and int8 conversion of tiny models of the three families, with and without CRF."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from ner_lightning.contract import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    LABELS_FILE,
    MODEL_METADATA_FILE,
    ONNX_DIR,
    ONNX_MODEL_FILE,
    SMOKE_REPORT_FILE,
)
from ner_lightning.data.datamodule import load_tokenizer
from ner_lightning.data.records import load_dataset_folder
from ner_lightning.model.module import TokenClassifier
from ner_lightning.onnx.convert import main as convert_main
from ner_lightning.onnx.predictor import OnnxTagger
from ner_lightning.onnx.smoke import TorchTagger
from tests.fixtures.tiny_backbones import TINY_BACKBONES
from tests.onnx.conftest import MAX_LENGTH, STRIDE, TOY_DATASET

MODELS = [(family, crf) for family in TINY_BACKBONES for crf in (False, True)]


def _sentences() -> list[list[str]]:
    dataset = load_dataset_folder(TOY_DATASET)
    sentences = [list(e.tokens) for split in dataset.splits.values() for e in split]
    # Longer than a window: exercises windowing and ownership on both sides.
    sentences.append([word for s in sentences[:4] for word in s])
    return sentences


def _no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")]


@pytest.mark.parametrize(("family", "use_crf"), MODELS)
def test_fp32_onnx_tags_equal_pytorch_tags(trained_models: dict, family: str, use_crf: bool) -> None:
    output = trained_models[(family, use_crf)]
    folder = output / ONNX_DIR
    metadata = json.loads((folder / MODEL_METADATA_FILE).read_text())
    assert metadata["use_crf"] is use_crf and (metadata["crf"] is not None) is use_crf
    assert metadata["max_length"] == MAX_LENGTH and metadata["stride"] == STRIDE
    assert metadata["source_checkpoint"] == BEST_CHECKPOINT
    assert metadata["git_commit"] and metadata["labels"] == json.loads((folder / LABELS_FILE).read_text())
    assert ("token_type_ids" in metadata["input_names"]) is (family == "bert")

    model = TokenClassifier.load_checkpoint(output / CHECKPOINT_DIR / BEST_CHECKPOINT)
    reference = TorchTagger(model, load_tokenizer(str(TINY_BACKBONES[family])), MAX_LENGTH, STRIDE)
    sentences = _sentences()
    expected = reference.tag_words(sentences, model.label_names)
    got = OnnxTagger(folder).tag_words(sentences)
    assert got == expected
    assert {tag for tags in got for tag in tags} != {"O"}, "the trained model should predict some entities"


def _convert(source: Path, target: Path, *extra: str) -> int:
    """`ner-convert` of a training output folder into `target`, smoke-tested on the toy dataset."""
    return convert_main(["--input", str(source), "--output", str(target), "--data", str(TOY_DATASET), *extra])


@pytest.mark.parametrize(("family", "use_crf"), MODELS)
def test_every_family_converts_to_a_validated_int8_folder(
    trained_models: dict, family: str, use_crf: bool, tmp_path: Path
) -> None:
    target = tmp_path / "model"
    assert _convert(trained_models[(family, use_crf)], target) == 0
    assert json.loads((target / SMOKE_REPORT_FILE).read_text())["passed"] is True


def test_convert_writes_int8_folder_without_checkpoints(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model"
    code = _convert(bert_crf_output, target)
    assert code == 0, capsys.readouterr().err
    names = {p.name for p in target.iterdir()}
    assert {ONNX_MODEL_FILE, MODEL_METADATA_FILE, LABELS_FILE, SMOKE_REPORT_FILE, "tokenizer.json"} <= names
    assert not [n for n in names if n.endswith((".ckpt", ".pt", ".safetensors"))]
    report = json.loads((target / SMOKE_REPORT_FILE).read_text())
    assert report["passed"] and [c["name"] for c in report["checks"]] == [
        "labels_match",
        "emissions_match",
        "tags_match",
        "int8_f1",
        "varied_lengths",
    ]
    assert report["held_out"]["split"] == "test"
    metadata = json.loads((target / MODEL_METADATA_FILE).read_text())
    assert metadata["precision"] == "int8" and metadata["use_crf"] is True
    graph = onnx.load(str(target / ONNX_MODEL_FILE))
    assert any(
        node.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul")
        for node in graph.graph.node
    )
    # The int8 folder serves on its own.
    tagged = OnnxTagger(target).predict(["Angela Merkel met Satya Nadella in Berlin ."])[0]
    assert [w.text for w in tagged.words][-2:] == ["Berlin", "."]
    # Converting again replaces the folder atomically.
    assert (
        convert_main(
            [
                "--input",
                str(bert_crf_output),
                "--output",
                str(target),
                "--no-optimize",
                "--per-channel",
                "--f1-tolerance",
                "1",
            ]
        )
        == 0
    )
    assert json.loads((target / MODEL_METADATA_FILE).read_text())["quantization"]["per_channel"] is True
    assert _no_leftovers(target) == []


def test_convert_exports_itself_when_onnx_folder_is_missing(bert_crf_output: Path, tmp_path: Path) -> None:
    shutil.rmtree(bert_crf_output / ONNX_DIR)
    target = tmp_path / "model"
    assert _convert(bert_crf_output, target) == 0
    assert json.loads((target / MODEL_METADATA_FILE).read_text())["exported_by_conversion"] is True
    assert not (bert_crf_output / ONNX_DIR).exists(), "the input folder is never written"


def _corrupt_weights(model_path: Path) -> None:
    graph = onnx.load(str(model_path))
    for initializer in graph.graph.initializer:
        values = numpy_helper.to_array(initializer)
        if values.ndim == 2 and values.size > 100:
            initializer.CopyFrom(
                numpy_helper.from_array((values * -3.0 + 0.5).astype(values.dtype), initializer.name)
            )
    onnx.save(graph, str(model_path))


def _swap_labels(folder: Path) -> None:
    labels = json.loads((folder / LABELS_FILE).read_text())
    labels[1], labels[3] = labels[3], labels[1]
    (folder / LABELS_FILE).write_text(json.dumps(labels))
    metadata = json.loads((folder / MODEL_METADATA_FILE).read_text())
    metadata["labels"] = labels
    (folder / MODEL_METADATA_FILE).write_text(json.dumps(metadata))


@pytest.mark.parametrize(
    ("corrupt", "failed"),
    [
        (lambda out: _corrupt_weights(out / ONNX_DIR / ONNX_MODEL_FILE), {"emissions_match", "tags_match"}),
        (lambda out: _swap_labels(out / ONNX_DIR), {"labels_match", "tags_match"}),
    ],
    ids=["corrupt-weights", "swap-labels"],
)
def test_smoke_test_fails_on_a_broken_model(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], corrupt, failed: set[str]
) -> None:
    corrupt(bert_crf_output)
    target, report_path = tmp_path / "model", tmp_path / "report.json"
    code = _convert(bert_crf_output, target, "--report", str(report_path))
    assert code == 1
    err = capsys.readouterr().err
    assert "smoke test failed" in err and all(f"[FAIL] {name}" in err for name in failed)
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and failed <= set(report["failed_checks"])
    assert not target.exists() and _no_leftovers(target) == []


def test_int8_f1_check_fails_beyond_tolerance(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "model"
    # A tolerance of -0.5 demands int8 beat fp32 by 50 points, beyond reach of any F1 above 0.5 (on
    # 27 entities int8 may beat fp32 by a few points): the check must fail and say so.
    code = _convert(bert_crf_output, target, "--f1-tolerance", "-0.5")
    assert code == 1
    assert "[FAIL] int8_f1" in capsys.readouterr().err and not target.exists()


def _call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = convert_main(argv)
    return code, capsys.readouterr().err


def test_bad_inputs_give_clear_errors_and_no_folder(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    target = tmp_path / "model"
    base = ["--output", str(target)]

    code, err = _call(["--input", str(tmp_path / "nowhere"), *base], capsys)
    assert code == 2 and "does not exist" in err

    empty = tmp_path / "empty-output"
    empty.mkdir()
    code, err = _call(["--input", str(empty), *base], capsys)
    assert code == 2 and "checkpoint is missing" in err and "best.ckpt" in err

    foreign = tmp_path / "foreign"
    (foreign / CHECKPOINT_DIR).mkdir(parents=True)
    torch.save({"state_dict": {}, "epoch": 3}, foreign / CHECKPOINT_DIR / BEST_CHECKPOINT)
    code, err = _call(["--input", str(foreign), *base], capsys)
    assert code == 2 and "not a ner-lightning checkpoint" in err

    (bert_crf_output / ONNX_DIR / ONNX_MODEL_FILE).unlink()
    code, err = _call(["--input", str(bert_crf_output), *base], capsys)
    assert code == 2 and "holds no model.onnx" in err
    assert not target.exists() and _no_leftovers(target) == []


def test_labels_file_missing_or_of_the_wrong_width(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = bert_crf_output / ONNX_DIR
    saved = (folder / LABELS_FILE).read_text()
    (folder / LABELS_FILE).unlink()
    code, err = _call(["--input", str(bert_crf_output), "--output", str(tmp_path / "m")], capsys)
    assert code == 2 and "labels.json is missing" in err

    labels = [*json.loads(saved), "B-MISC", "I-MISC"]
    (folder / LABELS_FILE).write_text(json.dumps(labels))
    metadata = json.loads((folder / MODEL_METADATA_FILE).read_text())
    metadata["labels"] = labels
    (folder / MODEL_METADATA_FILE).write_text(json.dumps(metadata))
    code, err = _call(["--input", str(bert_crf_output), "--output", str(tmp_path / "m")], capsys)
    assert code == 2 and "outputs 7 scores per token but labels.json lists 9 labels" in err
    assert not (tmp_path / "m").exists()


def test_dataset_labels_that_differ_from_the_model_are_a_warning_in_the_report(
    bert_crf_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14, defect 12: ner-convert compared nothing when the dataset's labels differ from the model's."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(TOY_DATASET, data)
    labels = json.loads((data / LABELS_FILE).read_text())
    (data / LABELS_FILE).write_text(json.dumps([*labels, "B-EXTRA", "I-EXTRA"]))
    target = tmp_path / "model"
    code = convert_main(["--input", str(bert_crf_output), "--output", str(target), "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning: the dataset" in err and "cannot predict EXTRA" in err
    (warning,) = json.loads((target / SMOKE_REPORT_FILE).read_text())["warnings"]
    assert warning["only_in_dataset"] == ["EXTRA"] and warning["only_in_model"] == []
    # The same conversion against the model's own dataset reports none.
    assert _convert(bert_crf_output, tmp_path / "again") == 0
    assert json.loads((tmp_path / "again" / SMOKE_REPORT_FILE).read_text())["warnings"] == []
