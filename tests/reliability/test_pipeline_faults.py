"""Fault injection into `ner-pipeline` (issue 14, acceptance 2).

The smoke pipeline runs as a user runs it (`python -m launch.cli run`, local backend, a temporary
workspace) and is killed at every step boundary and in the middle of the three long steps (a sweep
trial, final training, conversion), once with SIGKILL and once with SIGTERM, then run again. Each
chain kills at point k, reruns until point k + 1, kills again ... so a chain costs about one
pipeline run plus the restarts. After every kill no process of the workspace is left; after the
last rerun the registered model is the uninterrupted run's, registered once, and no MLflow run of
the workspace's SQLite store is left RUNNING.

What "the same model" means: the registered version's `content_sha256` equals the uninterrupted
run's. It covers every file of the model folder but the run record `smoke_report.json`
(`MODEL_RUN_RECORD_FILES`: job paths and timings), so `model.onnx`, the tokenizer, the labels and
`ner_model.json` (the chosen recipe, the int8 candidates table with every recipe's F1, drop,
interval and agreement, the source weights' sha256) are byte-identical. That holds because final
training keeps its last epoch (a resumed run has no best score to compare with) and the recipe is
chosen from the gate's figures, never from timings. On a mismatch the failure lists which fields
differ; the smoke reports are also compared with their run records set aside.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch.fingerprints import model_content_sha256
from launch.lineage import TAG_CONTENT_SHA256
from launch.local import EmulatedMLClient
from launch.pipeline import STEPS
from tests.conftest import REPO_ROOT
from tests.pipeline.processes import live_in_group

SMOKE = REPO_ROOT / "configs" / "pipeline" / "smoke.yaml"
MODEL_NAME = "ner-smoke"
ENV = {**os.environ, "NER_GIT_COMMIT": "0" * 40, "PYTHONUNBUFFERED": "1"}
#: Seconds a SIGKILLed pipeline's jobs may take to end (the watchdog's grace, launch/local/process_group.py).
ORPHAN_GRACE_S = 20.0
#: Keys of the smoke report that record the run (timings) rather than the model.
RUN_RECORD_KEYS = ("speed",)
JOB_PATH = re.compile(r"^.*/jobs/[0-9a-f]{32}/")
#: The smoke report names the checkpoint file it read: a resumed final training's conversion reads
#: `last.ckpt` (launch/steps/release.py), which holds the weights of `best.ckpt` (`ner_model.json`'s
#: `source_weights_sha256`, in the content hash, says so).
CHECKPOINT_NAME = re.compile(r"(best|last)\.ckpt$")


# --- kill points -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """Where a chain kills the pipeline: `reached(output, workspace, pid)` polled while it runs."""

    name: str
    reached: Callable[[str, Path, int], bool]


def _after(step: str) -> Point:
    """The boundary after `step`: its `done` (or `reused`) line; validate has none, the next step's line."""
    number = STEPS.index(step) + 1
    if step == "validate":
        line = re.compile(rf"^\[{number + 1}/{len(STEPS)}\] {STEPS[number]}: ", re.M)
    else:
        line = re.compile(rf"^\[{number}/{len(STEPS)}\] {step}: (done|reused)", re.M)
    return Point(f"after {step}", lambda output, _ws, _pid: bool(line.search(output)))


def _records(workspace: Path, pid: int) -> list[dict]:
    """Job records written by pipeline process `pid` whose process group is alive."""
    found = []
    for path in (workspace / "jobs").glob("*/status.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        mine = (record.get("executor") or {}).get("pid") == pid and record.get("status") == "Running"
        if mine and record.get("pgid") and live_in_group(record["pgid"]):
            found.append(record)
    return found


def _log(workspace: Path, record: dict) -> str:
    path = workspace / "jobs" / record["name"] / "user_logs" / "std_log.txt"
    return path.read_text(errors="replace") if path.is_file() else ""


def _in_trial(output: str, workspace: Path, pid: int) -> bool:
    """A sweep trial is training (its progress line is out)."""
    return any(r.get("parent") and "training:" in _log(workspace, r) for r in _records(workspace, pid))


def _in_final_training(output: str, workspace: Path, pid: int) -> bool:
    """Final training has written an epoch-end `last.ckpt` and is still running."""
    return any(
        r.get("display_name") == "smoke-final_training"
        and (workspace / "jobs" / r["name"] / "outputs" / "model" / "checkpoints" / "last.ckpt").is_file()
        for r in _records(workspace, pid)
    )


def _in_conversion(output: str, workspace: Path, pid: int) -> bool:
    """The conversion job is searching its int8 recipe."""
    return any(
        r.get("display_name") == "smoke-conversion" and "recipe search" in _log(workspace, r)
        for r in _records(workspace, pid)
    )


POINTS = (
    _after("validate"),
    _after("environment"),
    _after("data_asset"),
    _after("dry_run"),
    Point("during a sweep trial", _in_trial),
    _after("sweep"),
    _after("selection"),
    Point("during final training", _in_final_training),
    _after("final_training"),
    Point("during conversion", _in_conversion),
    _after("conversion"),
    _after("registration"),
)


# --- running and inspecting --------------------------------------------------------------------
def _command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "launch.cli", "run", "--config", str(SMOKE), "--workspace", str(workspace)]


class _Run:
    """One `ner-pipeline run` subprocess whose merged output is collected as it comes."""

    def __init__(self, workspace: Path) -> None:
        self.process = subprocess.Popen(
            _command(workspace),
            cwd=REPO_ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def finish(self, timeout_s: float = 600) -> int:
        code = self.process.wait(timeout=timeout_s)
        self.reader.join(timeout=10)
        return code


def _workspace_processes(workspace: Path) -> list[str]:
    """Live processes whose command line or working directory lies in `workspace`."""
    mark = str(workspace)
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (mark in cmdline or cwd.startswith(mark)):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _leftovers(workspace: Path) -> list[str]:
    """Processes of the workspace and live members of any job's process group."""
    left = _workspace_processes(workspace)
    for path in (workspace / "jobs").glob("*/status.json"):
        record = json.loads(path.read_text())
        if record.get("pgid"):
            left += [f"{pid} in the group of job {record['name']}" for pid in live_in_group(record["pgid"])]
    return left


def _wait_no_leftovers(workspace: Path, timeout_s: float) -> float:
    """Seconds until nothing of the workspace runs; fails naming what is left after `timeout_s`."""
    start = time.monotonic()
    while left := _leftovers(workspace):
        assert time.monotonic() - start < timeout_s, f"orphaned processes: {left}"
        time.sleep(0.2)
    return time.monotonic() - start


def _running_runs(workspace: Path) -> list[tuple[str, str]]:
    """(run id, name) of every run the workspace's MLflow SQLite store holds as RUNNING."""
    with sqlite3.connect(workspace / "mlflow.db") as db:
        return db.execute("SELECT run_uuid, name FROM runs WHERE status = 'RUNNING'").fetchall()


def _normalized(value):
    """A model folder's JSON with the run records set aside (see the module docstring)."""
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items() if k not in RUN_RECORD_KEYS}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    if isinstance(value, str):
        return CHECKPOINT_NAME.sub("<checkpoint>", JOB_PATH.sub("<job>/", value))
    return value


def _model_identity(folder: Path) -> dict[str, object]:
    """The registered folder file by file: bytes, the JSON files parsed (the smoke report without its
    run records), to name what differs when the content hashes do."""
    identity: dict[str, object] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if path.suffix == ".json" and name != "tokenizer.json":
            payload = _normalized(json.loads(path.read_text()))
            if isinstance(payload, dict) and isinstance(payload.get("checks"), list):
                payload["checks"] = {check["name"]: check for check in payload["checks"]}
            identity[name] = payload
        else:
            identity[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return identity


def _differences(expected: object, found: object, where: str = "") -> list[str]:
    """Where two model identities differ (`file.key[index]: expected != found`)."""
    if isinstance(expected, dict) and isinstance(found, dict):
        return [
            line
            for key in sorted(set(expected) | set(found))
            for line in _differences(expected.get(key), found.get(key), f"{where}.{key}" if where else key)
        ]
    if isinstance(expected, list) and isinstance(found, list) and len(expected) == len(found):
        return [
            line
            for i, pair in enumerate(zip(expected, found, strict=True))
            for line in _differences(*pair, f"{where}[{i}]")
        ]
    return [] if expected == found else [f"{where}: {str(expected)[:200]!r} != {str(found)[:200]!r}"]


@dataclass(frozen=True)
class Registered:
    version: str
    content_sha256: str
    folder: Path
    identity: dict[str, object]

    @property
    def recipe(self) -> str:
        """The int8 recipe the conversion chose."""
        return str(self.identity["ner_model.json"]["quantization"]["recipe"])  # type: ignore[index]


def _registered(workspace: Path) -> Registered:
    """The one registered version of the smoke model (fails when there are several)."""
    client = EmulatedMLClient(workspace)
    versions = list(client.models.list(name=MODEL_NAME))
    assert len(versions) == 1, f"duplicate model versions: {[(v.version, v.tags) for v in versions]}"
    (model,) = versions
    folder = client.resolve(str(model.path))
    client.close()
    return Registered(str(model.version), model.tags[TAG_CONTENT_SHA256], folder, _model_identity(folder))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Registered:
    """The uninterrupted run."""
    workspace = tmp_path_factory.mktemp("reference") / "ws"
    run = _Run(workspace)
    assert run.finish() == 0, run.output[-4000:]
    return _registered(workspace)


def _chain(workspace: Path, sig: signal.Signals) -> list[str]:
    """Kill at every point in turn, rerunning after each kill; returns one line per kill."""
    events = []
    for point in POINTS:
        started = time.monotonic()
        run = _Run(workspace)
        while not point.reached(run.output, workspace, run.process.pid):
            assert run.process.poll() is None, (
                f"the pipeline ended before {point.name}:\n{run.output[-4000:]}"
            )
            time.sleep(0.05)
        run.process.send_signal(sig)
        code = run.finish()
        if code in (0, -signal.SIGTERM) and "Phase 1 pipeline summary" in run.output:
            # The last boundary is the end of the run: the signal came as it exited (after main
            # returned, SIGTERM has its default action again).
            assert point is POINTS[-1], f"{point.name}: exit {code}\n{run.output[-4000:]}"
            settle = _wait_no_leftovers(workspace, 5)
        elif sig == signal.SIGTERM:
            assert code == 130, f"{point.name}: exit {code}\n{run.output[-4000:]}"
            assert "Run the same command again to resume" in run.output
            assert "Traceback" not in run.output, run.output[-4000:]
            # The pipeline stopped its jobs before exiting: nothing to wait for but zombies' reaping.
            settle = _wait_no_leftovers(workspace, 5)
        else:
            assert code == -signal.SIGKILL, f"{point.name}: exit {code}"
            settle = _wait_no_leftovers(workspace, ORPHAN_GRACE_S)
        events.append(
            f"{sig.name} {point.name}: {time.monotonic() - started:.1f}s, jobs ended {settle:.1f}s later"
        )
    final = _Run(workspace)
    assert final.finish() == 0, final.output[-4000:]
    assert "Traceback" not in final.output
    _wait_no_leftovers(workspace, 5)
    return events


def _assert_recovered(workspace: Path, reference: Registered) -> Registered:
    """The rerun's model is the reference's, registered once; no run RUNNING; one job per step."""
    registered = _registered(workspace)
    assert registered.version == "1"
    assert registered.content_sha256 == model_content_sha256(registered.folder)
    differences = _differences(reference.identity, registered.identity)
    assert not differences, "the registered model differs from the uninterrupted run's:\n" + "\n".join(
        differences
    )
    assert registered.content_sha256 == reference.content_sha256
    assert not _running_runs(workspace)
    client = EmulatedMLClient(workspace)
    completed: dict[str, int] = {}
    for job in client.jobs.list():
        if str(job.status) == "Completed":
            completed[job.display_name] = completed.get(job.display_name, 0) + 1
        else:
            assert str(job.status) in ("Failed", "Canceled"), (job.name, job.status)
    client.close()
    steps = ("dry_run", "sweep", "final_training", "conversion")
    assert completed == {f"smoke-{step}": 1 for step in steps}, completed
    state = json.loads((workspace / "pipelines" / "smoke.json").read_text())["steps"]
    assert {step: record["status"] for step, record in state.items()} == {s: "completed" for s in STEPS[1:]}
    return registered


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_at_every_step_boundary_and_mid_step_the_rerun_registers_the_same_model(
    tmp_path: Path, reference: Registered, sig: signal.Signals
) -> None:
    events = _chain(tmp_path / "ws", sig)
    print("\n".join(events))
    registered = _assert_recovered(tmp_path / "ws", reference)
    print(f"int8 recipe: uninterrupted {reference.recipe}, after the {sig.name} chain {registered.recipe}")
