"""The error boundary of every console tool (`ner-data`, `ner-train`, `ner-convert`, `ner-predict`).

A tool's `main(argv)` is wrapped once with `error_boundary("ner-x")`, so every tool answers a
failure the same way:

- a known error (`NerLightningError`: bad input, config, model or export) prints its message,
  which names the file, line, field and fix, without a traceback, and exits 2;
- an operating-system error (missing file, no permission, disk full) prints the file and the
  reason, exits 2, and writes the traceback to a log file;
- any other exception is a bug: one short line, the path of the log file holding the traceback,
  exit 1 (inside a job, where only the job's log comes back, the traceback is printed too);
- Ctrl-C exits 130 with one line, and so does SIGTERM (how a job is canceled: during training
  Lightning's own handler runs first, then training stops at once instead of finishing an
  evaluation or an export that would ignore the request); a closed output pipe
  (`ner-predict ... | head`) exits quietly.

`--debug` anywhere on the command line (before a `--`), or `NER_DEBUG=1` in the environment, also
prints the traceback. Pure Python: the launcher may use it too.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from ner_lightning.contract import ENV_MLFLOW_RUN_ID
from ner_lightning.errors import NerLightningError

#: Command-line flag that shows tracebacks (removed before the tool parses its arguments).
DEBUG_FLAG: Final = "--debug"
#: Environment variable that shows tracebacks when set to anything but "", "0", "false" or "no".
DEBUG_ENV: Final = "NER_DEBUG"
#: Environment variable naming the folder for tracebacks of unexpected errors (default: the temp folder).
LOG_DIR_ENV: Final = "NER_LOG_DIR"
#: Exit status of a known error (bad input, configuration, model folder, file system).
EXIT_BAD_INPUT: Final = 2
#: Exit status of an unexpected error (a bug: the traceback is in the log file).
EXIT_UNEXPECTED: Final = 1
#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED: Final = 130
#: Exit status when the reader of stdout went away (128 + SIGPIPE).
EXIT_BROKEN_PIPE: Final = 141

#: Environment variables that mark a job (the launcher's MLflow run, an Azure ML run).
_JOB_ENV: Final = (ENV_MLFLOW_RUN_ID, "AZUREML_RUN_ID")

ToolMain = Callable[[list[str]], "int | None"]


def debug_requested(argv: Sequence[str]) -> bool:
    """Whether `--debug` is among the options of `argv` or `NER_DEBUG` is set to a true value."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no"):
        return True
    return DEBUG_FLAG in _options(argv)


def strip_debug_flag(argv: Sequence[str]) -> list[str]:
    """`argv` without the `--debug` flags that precede a `--` separator."""
    options = _options(argv)
    return [a for a in options if a != DEBUG_FLAG] + list(argv[len(options) :])


def _options(argv: Sequence[str]) -> list[str]:
    return list(argv[: argv.index("--")]) if "--" in argv else list(argv)


def error_boundary(tool: str) -> Callable[[ToolMain], Callable[[Sequence[str] | None], int]]:
    """Decorate a console tool's `main(argv) -> exit status` with the shared error handling.

    The decorated function takes `argv` (default `sys.argv[1:]`) and receives it without
    `--debug`; a `None` return counts as exit status 0.

    Args:
        tool: The tool's name as the user types it (`ner-data`), used as the message prefix and
            in the log file name.

    Returns:
        The decorator.
    """

    def decorate(function: ToolMain) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(function)
        def main(argv: Sequence[str] | None = None) -> int:
            process_arguments = argv is None
            argv = list(sys.argv[1:] if argv is None else argv)
            debug = debug_requested(argv)
            if process_arguments:  # tools that read sys.argv themselves must not see --debug either
                sys.argv[1:] = strip_debug_flag(argv)
            restore = interrupt_on_sigterm()
            try:
                status = function(strip_debug_flag(argv))
            except SystemExit:
                raise
            except BaseException as error:  # the one place that answers every error
                return report_error(tool, error, debug=debug)
            finally:
                restore()
            return 0 if status is None else int(status)

        return main

    return decorate


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled wherever Ctrl-C is (a `KeyboardInterrupt`).

    A subclass, not `KeyboardInterrupt` itself: once a plain one was raised inside some of
    Python's own machinery (an import under `python -m`), the interpreter reported the process as
    killed by SIGINT at exit even after the tool had caught it and chosen its exit status.
    """


#: SIGTERMs received; `check_terminated` raises again for one whose `Terminated` Python dropped.
_RECEIVED: list[str] = []


def raise_terminated(signum: int, _frame: object) -> None:
    """Signal handler: raise `Terminated` (SIGTERM ends a tool like Ctrl-C)."""
    _RECEIVED.append(signal.Signals(signum).name)
    raise Terminated(_RECEIVED[-1])


def check_terminated() -> None:
    """Raise `Terminated` once more when a SIGTERM arrived.

    An exception raised by a signal handler is dropped (printed as "Exception ignored") when the
    signal lands in a garbage-collector callback or a `__del__`; a caller that checks at its safe
    points (the pipeline: before each progress line) still stops. Consumes the record.
    """
    if _RECEIVED:
        name = _RECEIVED.pop()
        _RECEIVED.clear()
        raise Terminated(name)


def interrupt_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM end the tool like Ctrl-C; returns what puts the previous handler back.

    A `Terminated` that Python drops (the signal landed in a garbage-collector callback or a
    `__del__`) is not printed as "Exception ignored ... Traceback": `check_terminated` raises it
    again at the caller's next safe point, so the report would only alarm the user. Other
    unraisable exceptions keep the previous hook. Only the main thread may set handlers; a tool
    called from another thread keeps the default.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    previous_hook = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, Terminated):
            return
        previous_hook(unraisable)

    sys.unraisablehook = hook

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        sys.unraisablehook = previous_hook

    return restore


def report_error(
    tool: str, error: BaseException, *, debug: bool = False, stream: TextIO | None = None
) -> int:
    """Print what went wrong (see the module docstring) and return the exit status.

    Args:
        tool: Name of the tool, the prefix of every line.
        error: The exception that ended the tool.
        debug: Print the traceback too.
        stream: Where to print (default stderr).

    Returns:
        The exit status for the error's kind.
    """
    stream = stream or sys.stderr
    if isinstance(error, BrokenPipeError):
        # The reader of our output left (e.g. `| head`); stop quietly and keep Python from
        # complaining again when it flushes stdout at exit.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    if debug:
        traceback.print_exception(error, file=stream)
    if isinstance(error, KeyboardInterrupt):
        print(f"{tool}: interrupted", file=stream)
        return EXIT_INTERRUPTED
    if isinstance(error, NerLightningError):
        print(f"{tool}: error: {error}", file=stream)
        return EXIT_BAD_INPUT
    log = None if debug else write_traceback_log(tool, error)
    if not debug and running_in_job():
        # A job's log is all its user gets back; a file in the node's temp folder would be lost.
        traceback.print_exception(error, file=stream)
    where = f"the traceback is in {log}" if log else f"run with {DEBUG_FLAG} to see the traceback"
    if isinstance(error, OSError) and error.strerror:
        files = " -> ".join(str(f) for f in (error.filename, error.filename2) if f is not None)
        print(f"{tool}: error: {files + ': ' if files else ''}{error.strerror}", file=stream)
        print(f"{tool}: check the path, its permissions and the free disk space; {where}", file=stream)
        return EXIT_BAD_INPUT
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    print(f"{tool}: unexpected error: {type(error).__name__}{': ' + message if message else ''}", file=stream)
    print(f"{tool}: this is a bug in {tool}, not in your input; {where}", file=stream)
    return EXIT_UNEXPECTED


def running_in_job() -> bool:
    """Whether this process runs as a job (the launcher or Azure ML set a run id)."""
    return any(os.environ.get(name) for name in _JOB_ENV)


def write_traceback_log(tool: str, error: BaseException) -> Path | None:
    """Write the error's traceback to `<NER_LOG_DIR or temp>/ner-lightning/<tool>-<time>-<pid>.log`.

    Returns:
        The log file, or None when it could not be written.
    """
    base = Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "ner-lightning")
    path = base / f"{tool}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        base.mkdir(parents=True, exist_ok=True)
        text = f"{tool} {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(error))
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
