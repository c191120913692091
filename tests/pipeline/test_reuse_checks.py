"""Reuse checks what it reuses, and a wrongly shaped state file is refused (issue 14, defects 4, 6, 11).

Defect 4: a deleted conversion output or registered model folder was "reused" (exit 0) while the
model pointed at nothing, even with `--force registration`. Now the step runs again and says why.
Defect 11/6: a state file that is valid JSON of the wrong shape gave a traceback; now it names the
file, the field and a fix, and the fix (deleting it) registers no second production model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from launch.cli import main
from launch.lineage import TAG_CONTENT_SHA256
from launch.local import EmulatedMLClient
from launch.pipeline import load_pipeline_config
from ner_lightning.contract import SMOKE_REPORT_FILE, STAGE_CONVERSION, STAGE_FINAL, STAGE_PROD, TAG_STAGE
from tests.pipeline.test_pipeline import MODEL_FILES, SMOKE, _registration, _run_cli, _spec
from tests.pipeline.test_pipeline import emulated as emulated  # the fixture

STATE_SHAPES = {
    "a list": [],
    "steps not a mapping": {"version": 1, "steps": ["validate"]},
    "a record without fingerprint": {"version": 1, "steps": {"environment": {"status": "completed"}}},
    "a status of the wrong type": {
        "version": 1,
        "steps": {"environment": {"fingerprint": "x", "status": 3, "result": {}}},
    },
    "a result that is a list": {
        "version": 1,
        "steps": {"environment": {"fingerprint": "x", "status": "completed", "result": []}},
    },
    "an unknown step": {"version": 1, "steps": {"trainig": {"fingerprint": "x", "status": "completed"}}},
    "another version": {"version": 7, "steps": {}},
}


@pytest.mark.parametrize("shape", sorted(STATE_SHAPES))
def test_a_wrongly_shaped_state_file_names_file_field_and_fix(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    workspace = tmp_path / "ws"
    state = workspace / "pipelines" / "smoke.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(STATE_SHAPES[shape]))
    assert main(["validate", "--config", str(SMOKE), "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert str(state) in err and "Fix: delete it" in err and "Traceback" not in err, err
    assert "no second production model" in err


def test_unknown_pipeline_key_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "smoke.yaml"
    config.write_text(
        SMOKE.read_text(encoding="utf-8").replace(
            "dry_run:\n  limit_batches: 2", "dry_run:\n  limit_batch: 2"
        )
    )
    from launch.errors import LaunchError

    with pytest.raises(LaunchError) as info:
        load_pipeline_config(config)
    assert info.value.field == "dry_run.limit_batch" and info.value.line is not None
    assert "did you mean `dry_run.limit_batches`" in str(info.value)


def test_a_registered_version_whose_files_are_gone_is_not_reused(emulated) -> None:
    """`register_model` finds the version it registered before by content, then checks its files."""
    backend, name = emulated.backend, "ner-files-gone"
    final = backend.run(_spec(emulated, "true", stage=STAGE_FINAL))
    converted = backend.run(_spec(emulated, MODEL_FILES, stage=STAGE_CONVERSION))
    registration = replace(_registration(final.run_id, converted.outputs["model"]), name=name)
    first = backend.register_model(registration)
    assert backend.model_fingerprint(name, first.version) == first.tags[TAG_CONTENT_SHA256]
    shutil.rmtree(emulated.client.models.local_path(name, first.version))
    assert backend.model_fingerprint(name, first.version) is None
    again = backend.register_model(registration)
    assert (again.version, again.reused) == ("2", False)
    assert backend.model_fingerprint(name, again.version) == again.tags[TAG_CONTENT_SHA256]
    stages = {m.version: m.tags[TAG_STAGE] for m in emulated.client.models.list(name=name)}
    assert stages == {"1": "archived", "2": STAGE_PROD}
    # A job output that was deleted has no fingerprint; an intact one hashes the same twice.
    assert backend.output_fingerprint(converted.job_id, "model") == backend.output_fingerprint(
        converted.job_id, "model"
    )
    shutil.rmtree(emulated.client.jobs.store.output_dir(converted.job_id, "model"))
    assert backend.output_fingerprint(converted.job_id, "model") is None


def test_a_version_tagged_with_the_whole_folder_hash_before_run_records_were_left_out_stays_intact(
    emulated,
) -> None:
    """Versions registered before `content_sha256` left out the smoke report carry the whole folder's
    fingerprint: while their files are intact they are neither reported changed nor registered again."""
    from launch.fingerprints import folder_fingerprint, model_content_sha256

    backend, name = emulated.backend, "ner-legacy-tag"
    final = backend.run(_spec(emulated, "true", stage=STAGE_FINAL))
    converted = backend.run(_spec(emulated, MODEL_FILES, stage=STAGE_CONVERSION))
    registration = replace(_registration(final.run_id, converted.outputs["model"]), name=name)
    first = backend.register_model(registration)
    folder = emulated.client.models.local_path(name, first.version)
    (folder / SMOKE_REPORT_FILE).write_text('{"passed": true}\n')
    assert model_content_sha256(folder) == first.tags[TAG_CONTENT_SHA256]  # the run record is left out
    legacy = folder_fingerprint(folder)
    record = emulated.config.workspace / "registry" / "models" / name / f"{first.version}.yaml"
    record.write_text(record.read_text().replace(first.tags[TAG_CONTENT_SHA256], legacy))
    assert backend.model_fingerprint(name, first.version, legacy) == legacy
    again = backend.register_model(registration)
    assert (again.version, again.reused) == (first.version, True)
    # Changed model files are still caught under the old tag.
    (folder / "labels.json").write_text("[]\n")
    assert backend.model_fingerprint(name, first.version, legacy) not in (None, legacy)


def _prod_versions(workspace: Path, name: str) -> list[str]:
    client = EmulatedMLClient(workspace)
    return [m.version for m in client.models.list(name=name) if (m.tags or {}).get(TAG_STAGE) == STAGE_PROD]


def _model_files_intact(workspace: Path, name: str, version: str) -> bool:
    from launch.fingerprints import model_content_sha256

    client = EmulatedMLClient(workspace)
    model = client.models.get(name, version)
    try:
        folder = client.models.local_path(name, version)
    except Exception:
        return False
    return folder.is_dir() and model_content_sha256(folder) == model.tags[TAG_CONTENT_SHA256]


@pytest.mark.slow
def test_deleted_outputs_are_produced_again_and_a_reshaped_state_file_is_refused(tmp_path: Path) -> None:
    """Through `ner-pipeline` on the smoke preset: conversion output deleted -> conversion reruns;
    registered model folder deleted -> registration reruns (with and without --force); a state file
    of the wrong shape exits 2 with its fix, and following the fix keeps one production model."""
    config = load_pipeline_config(SMOKE)
    workspace = tmp_path / "ws"
    _run_cli(workspace)
    state_file = workspace / "pipelines" / f"{config.name}.json"
    state = json.loads(state_file.read_text())
    conversion_job = state["steps"]["conversion"]["result"]["job_id"]
    assert state["steps"]["conversion"]["result"]["output_sha256"]

    # (1) the conversion output is gone: the conversion runs again, and registration after it.
    shutil.rmtree(workspace / "jobs" / conversion_job / "outputs" / "model")
    rerun = _run_cli(workspace)
    assert f"conversion: running again: the conversion output of job {conversion_job} no longer exists" in (
        rerun.stdout
    ), rerun.stdout
    assert "reused: environment, data_asset, dry_run, sweep, selection, final_training\n" in rerun.stdout
    (prod,) = _prod_versions(workspace, config.model_name)
    assert _model_files_intact(workspace, config.model_name, prod)

    # (2) the registered model's folder is gone: --force registration does not hand it out again.
    client = EmulatedMLClient(workspace)
    shutil.rmtree(client.models.local_path(config.model_name, prod))
    forced = _run_cli(workspace, "--force", "registration")
    assert "already registered (reused)" not in forced.stdout, forced.stdout
    (prod,) = _prod_versions(workspace, config.model_name)
    assert _model_files_intact(workspace, config.model_name, prod)

    # (3) ... nor does a plain rerun, which says why it registers again.
    shutil.rmtree(EmulatedMLClient(workspace).models.local_path(config.model_name, prod))
    plain = _run_cli(workspace)
    assert "registration: running again: registered model" in plain.stdout, plain.stdout
    (prod,) = _prod_versions(workspace, config.model_name)
    assert _model_files_intact(workspace, config.model_name, prod)
    versions_before = len(list(EmulatedMLClient(workspace).models.list(name=config.model_name)))

    # (4) a state file of the wrong shape: exit 2, no traceback, the fix; following it (delete the
    # file) recomputes the steps and still leaves exactly one production model.
    state_file.write_text(json.dumps([state]))
    refused = _run_cli(workspace, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert str(state_file) in refused.stderr and "Fix: delete it" in refused.stderr
    state_file.unlink()
    _run_cli(workspace)
    assert len(_prod_versions(workspace, config.model_name)) == 1
    assert len(list(EmulatedMLClient(workspace).models.list(name=config.model_name))) <= versions_before + 1
