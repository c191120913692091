"""The shared error boundary (`ner_lightning.console`) and the label-set warning for `ner-convert`."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ner_lightning.console import (
    Terminated,
    check_terminated,
    error_boundary,
    interrupt_on_sigterm,
    raise_terminated,
    strip_debug_flag,
)
from ner_lightning.errors import DataError
from ner_lightning.onnx.label_sets import label_set_warning


def _tool(error: BaseException | None, seen: list[list[str]] | None = None):
    """A console tool that records its arguments in `seen` and raises `error`."""

    @error_boundary("ner-demo")
    def main(argv: list[str]) -> int:
        if seen is not None:
            seen.append(argv)
        if error is not None:
            raise error
        return 0

    return main


@pytest.fixture(autouse=True)
def _logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("NER_DEBUG", raising=False)
    for name in ("MLFLOW_RUN_ID", "AZUREML_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "logs"


def test_known_error_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str], _logs: Path) -> None:
    error = DataError("bad tag", path="a.conll", line=3, field="tag", fix="use O")
    assert _tool(error)(["x"]) == 2
    err = capsys.readouterr().err
    assert err == "ner-demo: error: a.conll:3 [tag]: bad tag Fix: use O\n"
    assert not _logs.exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_flag_or_env_prints_the_traceback_and_the_tool_never_sees_the_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    argv = ["convert", "--debug"] if how == "flag" else ["convert"]
    if how == "env":
        monkeypatch.setenv("NER_DEBUG", "1")
    seen: list[list[str]] = []
    tool = _tool(DataError("bad tag", fix="use O"), seen)
    assert tool(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("ner-demo: error: bad tag Fix: use O")
    assert seen == [["convert"]]


def test_unexpected_error_is_a_short_line_and_a_log_with_the_traceback(
    capsys: pytest.CaptureFixture[str], _logs: Path
) -> None:
    assert _tool(ZeroDivisionError("division by zero"))([]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "ner-demo: unexpected error: ZeroDivisionError: division by zero" in err
    logs = list(_logs.glob("ner-demo-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    assert "Traceback" in logs[0].read_text(encoding="utf-8")


def test_inside_a_job_an_unexpected_error_also_prints_its_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_RUN_ID", "abc123")
    assert _tool(ZeroDivisionError("division by zero"))([]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ner-demo: unexpected error: ZeroDivisionError" in err
    assert _tool(DataError("bad tag"))([]) == 2
    assert capsys.readouterr().err == "ner-demo: error: bad tag\n"  # known errors stay one line


def test_os_errors_name_the_file_and_reason(capsys: pytest.CaptureFixture[str]) -> None:
    error = OSError(errno.ENOSPC, "No space left on device", "/data/out/train.jsonl")
    assert _tool(error)([]) == 2
    err = capsys.readouterr().err
    assert "ner-demo: error: /data/out/train.jsonl: No space left on device" in err and "Traceback" not in err


def test_interrupt_exits_130_and_system_exit_passes_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert _tool(KeyboardInterrupt())([]) == 130
    assert capsys.readouterr().err == "ner-demo: interrupted\n"
    with pytest.raises(SystemExit):
        _tool(SystemExit(2))([])


def test_sigterm_ends_a_tool_like_ctrl_c_and_the_handler_is_restored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A canceled job gets SIGTERM; a tool stops at once (issue 14: a job's evaluation and export
    went on after it, until the emulator's SIGKILL 10 s later)."""
    before = signal.getsignal(signal.SIGTERM)

    @error_boundary("ner-demo")
    def main(argv: list[str]) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler
        return 0

    started = time.monotonic()
    assert main([]) == 130
    assert time.monotonic() - started < 4
    assert capsys.readouterr().err == "ner-demo: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_sigterm_dropped_inside_a_finalizer_is_raised_at_the_next_check() -> None:
    """Found by the pipeline fault test: the signal landed in SQLAlchemy's garbage-collector callback,
    Python printed "Exception ignored" and the pipeline ran on to the end."""

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler's Terminated is dropped here

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        Finalized()
        with pytest.raises(Terminated):
            check_terminated()
        check_terminated()  # consumed: raised once
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_dropped_sigterm_is_not_reported_and_other_finalizer_errors_still_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the pipeline fault test: the signal landed in a weakref callback and Python printed
    "Exception ignored ... Traceback" (the unraisable hook) before the pipeline stopped at its next step."""

    class Finalized:
        def __init__(self, action) -> None:
            self.action = action

        def __del__(self) -> None:
            self.action()

    def boom() -> None:
        raise ValueError("a real finalizer bug")

    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: reported.append(unraisable.exc_value))
    restore = interrupt_on_sigterm()
    try:
        Finalized(lambda: os.kill(os.getpid(), signal.SIGTERM))
        assert reported == []
        with pytest.raises(Terminated):
            check_terminated()
        Finalized(boom)
        assert [type(e) for e in reported] == [ValueError]
    finally:
        restore()
    hook = sys.unraisablehook
    Finalized(boom)
    assert sys.unraisablehook is hook and len(reported) == 2, "restored: the previous hook again"


def test_process_arguments_lose_the_debug_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["ner-demo", "fit", "--debug", "--", "--debug"])
    seen: list[list[str]] = []
    assert _tool(None, seen)() == 0
    assert seen == [["fit", "--", "--debug"]] and sys.argv[1:] == ["fit", "--", "--debug"]
    assert strip_debug_flag(["--debug"]) == []


def test_label_set_warning_names_the_missing_types() -> None:
    model = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert (
        label_set_warning(model, ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]) is None
    )  # order does not matter
    warning = label_set_warning(model, ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"], dataset="data/v2")
    assert warning is not None
    assert warning["only_in_dataset"] == ["ORG"] and warning["only_in_model"] == ["LOC"]
    assert "data/v2" in warning["message"] and "cannot predict ORG" in warning["message"]
