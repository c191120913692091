"""`launch.report` and `launch.charts`: the notebook's tables and charts, read from a real MLflow store (SQLite)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from launch.charts import sweep_chart, training_curve_chart
from launch.jobs import TrialResult
from launch.local.workspace import LocalWorkspace
from launch.report import (
    describe_final_training,
    entity_scores,
    head_name,
    metric_history,
    model_table,
    ranked_trials,
)
from launch.selection import select_best
from ner_lightning.contract import HELDOUT_F1_INT8, TEST_ENTITY_TABLE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """An MLflow store as the emulated workspace keeps it, with one experiment."""
    workspace = LocalWorkspace(tmp_path_factory.mktemp("report") / "ws")
    client = workspace.mlflow_client()
    return SimpleNamespace(client=client, experiment=workspace.experiment_id(client, "report"))


def _run(store: SimpleNamespace, params: dict | None = None, metrics: dict | None = None) -> str:
    """A finished run with `params` and `metrics` ({name: [(step, value), ...]})."""
    run_id = store.client.create_run(store.experiment).info.run_id
    for name, value in (params or {}).items():
        store.client.log_param(run_id, name, value)
    for name, points in (metrics or {}).items():
        for step, value in points:
            store.client.log_metric(run_id, name, value, step=step)
    store.client.set_terminated(run_id)
    return run_id


@pytest.fixture(scope="module")
def sweep(store: SimpleNamespace) -> SimpleNamespace:
    """Four trials: two searched heads, one whose head and learning rate were not searched, one failed."""
    runs = [
        _run(store),
        _run(store),
        _run(store, {"learning_rate": "5e-05", "head/class_path": "ner_lightning.model.heads.CRFHead"}),
        _run(store),
    ]
    trials = [
        TrialResult("t1", runs[0], "Completed", {"learning_rate": 1e-4, "head": "crf"}, {"val_f1": 0.5}),
        TrialResult("t2", runs[1], "Completed", {"learning_rate": 3e-4, "head": "softmax"}, {"val_f1": 0.7}),
        TrialResult("t3", runs[2], "Completed", {"epochs": 1}, {"val_f1": 0.6}),
        TrialResult(
            "t4",
            runs[3],
            "Failed",
            {"learning_rate": 2e-4, "head": "softmax"},
            {},
            "Traceback\nValueError: boom",
        ),
    ]
    return SimpleNamespace(selection=select_best(trials, context_tags={}, sweep_id="sweep").to_json())


def test_head_names_from_sweep_params_and_logged_class_paths() -> None:
    assert head_name("crf") == head_name("ner_lightning.model.heads.CRFHead") == head_name(True) == "crf"
    assert (
        head_name("softmax")
        == head_name("ner_lightning.model.heads.SoftmaxHead")
        == head_name("false")
        == "softmax"
    )
    assert head_name("my_package.heads.SpanHead") == "span"


def test_ranked_trials_best_first_with_head_and_learning_rate_from_mlflow(store, sweep) -> None:
    table = ranked_trials(sweep.selection, store.client)
    assert list(table.columns[:5]) == ["rank", "trial_id", "val_f1", "learning_rate", "head"]
    assert table.trial_id.tolist() == ["t2", "t3", "t1", "t4"]
    assert table["rank"].tolist()[:3] == [1, 2, 3] and pd.isna(table["rank"].iloc[3])
    assert table.val_f1.tolist()[:3] == [0.7, 0.6, 0.5] and math.isnan(table.val_f1.iloc[3])
    # t3 searched neither: its run's logged params say CRF at 5e-05.
    assert table["head"].tolist() == ["softmax", "crf", "crf", "softmax"]
    assert table.learning_rate.tolist() == [3e-4, 5e-5, 1e-4, 2e-4]
    assert table.selected.tolist() == [True, False, False, False]
    assert table.error.iloc[3] == "Traceback\nValueError: boom" and table.epochs.iloc[1] == 1
    assert "<table" in table._repr_html_()


def test_sweep_chart_plots_f1_against_learning_rate_per_head(store, sweep, tmp_path: Path) -> None:
    chart = sweep_chart(ranked_trials(sweep.selection, store.client))
    (axes,) = chart.figure.axes
    assert axes.get_xscale() == "log" and axes.get_xlabel() == "learning rate"
    assert axes.get_title() == "sweep: 4 trials (1 without val_f1)"
    points = {c.get_label(): c.get_offsets().tolist() for c in axes.collections}
    assert points == {
        "crf": [[5e-5, 0.6], [1e-4, 0.5]],
        "softmax": [[3e-4, 0.7]],
        "selected": [[3e-4, 0.7]],
    }
    png = chart.png()
    assert png.startswith(PNG_MAGIC) and chart._repr_png_().startswith(PNG_MAGIC)
    assert chart.save(tmp_path / "sweep.png").read_bytes().startswith(PNG_MAGIC)


def test_without_mlflow_an_unsearched_learning_rate_plots_by_rank(sweep) -> None:
    table = ranked_trials(sweep.selection)
    assert table["head"].iloc[1] is None and math.isnan(table.learning_rate.iloc[1])
    (axes,) = sweep_chart(table).figure.axes
    assert axes.get_xlabel() == "rank" and axes.get_xscale() == "linear"
    assert {c.get_label() for c in axes.collections} == {"crf", "softmax", "unknown head", "selected"}


def test_metric_history_and_training_curve(store) -> None:
    run_id = _run(
        store, metrics={"train_loss": [(1, 2.0), (3, 1.5), (5, 1.0)], "val_f1": [(4, 0.3), (9, 0.6)]}
    )
    history = metric_history(store.client, run_id)
    assert list(history.columns) == ["metric", "step", "value", "timestamp"]
    assert history[["metric", "step", "value"]].values.tolist() == [
        ["train_loss", 1, 2.0],
        ["train_loss", 3, 1.5],
        ["train_loss", 5, 1.0],
        ["val_f1", 4, 0.3],
        ["val_f1", 9, 0.6],
    ]
    assert metric_history(store.client, run_id, ["never_logged"]).empty
    chart = training_curve_chart(history, title="final")
    loss_axes, score_axes = chart.figure.axes
    ((loss,), (f1,)) = loss_axes.lines, score_axes.lines
    assert (list(loss.get_xdata()), list(loss.get_ydata())) == ([1, 3, 5], [2.0, 1.5, 1.0])
    assert (list(f1.get_xdata()), list(f1.get_ydata())) == ([4, 9], [0.3, 0.6])
    assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == ["train_loss", "val_f1"]
    assert chart.png().startswith(PNG_MAGIC)


def test_entity_scores_from_the_test_table_else_from_per_type_metrics(store) -> None:
    with_table = _run(store)
    # What the training CLI logs after testing (EnvMLFlowLogger.log_entity_table).
    store.client.log_table(
        with_table,
        data={
            "type": ["LOC", "PER", "micro"],
            "precision": [0.5, 1.0, 0.75],
            "recall": [1.0, 0.5, 0.75],
            "f1": [2 / 3, 2 / 3, 0.75],
            "support": [2, 2, 4],
        },
        artifact_file=TEST_ENTITY_TABLE,
    )
    table = entity_scores(store.client, with_table)
    assert table.index.tolist() == ["LOC", "PER", "micro"]
    assert table.loc["micro"].tolist() == [0.75, 0.75, 0.75, 4]
    assert "held-out test split" in table.attrs["source"]

    from_metrics = _run(
        store, metrics={"test_f1_PER": [(9, 0.4)], "test_f1_LOC": [(9, 0.2)], "test_f1": [(9, 0.3)]}
    )
    table = entity_scores(store.client, from_metrics)
    assert table.f1.to_dict() == {"LOC": 0.2, "PER": 0.4, "micro": 0.3}
    assert table.attrs["source"].startswith("test_f1_<type>")

    validation_only = _run(store, metrics={"val_f1_ORG": [(1, 0.1), (2, 0.5)], "val_f1": [(2, 0.5)]})
    assert entity_scores(store.client, validation_only).f1.to_dict() == {"ORG": 0.5, "micro": 0.5}
    nothing = entity_scores(store.client, _run(store))
    assert nothing.empty and "no per-type scores" in nothing.attrs["source"]


def test_model_table_shows_the_version_and_its_held_out_scores() -> None:
    model = {
        "name": "ner",
        "version": "3",
        "tags": {HELDOUT_F1_INT8: "0.812300", "stage": "prod", "other": "x"},
    }
    table = model_table(model)
    assert table.value.to_dict() == {"model": "ner:3", "stage": "prod", HELDOUT_F1_INT8: "0.812300"}


def test_describe_final_training_shows_the_decision_before_submitting(tmp_path: Path) -> None:
    from launch.final_training import mark_variant_complete, mark_variant_running
    from tests.final_training.conftest import Project

    project = Project(tmp_path)
    first = project.load()
    table = describe_final_training(first)
    value = table.value.to_dict()
    assert value["decision"] == "train a new variant" and value["run mode"] == "reuse_if_exists"
    assert (value["variant"], value["spec_fp"], value["exec_fp"]) == ("v1", first.spec_fp, first.exec_fp)
    assert value["starts from"] == f"pretrained backbone {first.backbone}"
    assert "learning_rate=0.0003" in value["hyperparameters"] and value["head"] == "softmax"

    mark_variant_running(first, run_id="job1", job_id="job1", output_dir="azureml://jobs/job1/outputs/model")
    checkpoint = "azureml://jobs/job1/outputs/model/paths/checkpoints/best.ckpt"
    mark_variant_complete(first, checkpoint=checkpoint, metrics={"val_f1": 0.5})
    assert (
        describe_final_training(project.load()).value["decision"]
        == "reuse the complete variant (no training)"
    )
    project.final_config("run:\n  mode: continue_from_previous\nsource:\n  type: final_training\n")
    child = describe_final_training(project.load()).value
    assert child["decision"] == "train a new variant" and child["run mode"] == "continue_from_previous"
    assert child["starts from"].startswith(checkpoint) and child["spec_fp"] != first.spec_fp
    assert child["parent"] == f"exec_fp={first.exec_fp}, spec_fp={first.spec_fp}, variant=1"
