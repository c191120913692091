"""Run one benchmark measurement in a fresh Python process and read its JSON report back.

Peak RSS is a per-process high-water mark, and torch keeps allocator caches and thread pools
alive, so every measured run (one side of a throughput comparison, one scaling point) gets its own
process: `python -m benchmarks.worker <spec.json>`. The spec names a function
(`"module:function"`) that takes JSON keyword arguments and returns a JSON-able dict.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


class WorkerError(RuntimeError):
    """A measurement process failed; the message carries the end of its output."""


def run_in_subprocess(target: str, kwargs: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Call `target(**kwargs)` in a new interpreter and return its result.

    Args:
        target: `"package.module:function"`.
        kwargs: JSON-able keyword arguments.
        timeout: Seconds before the process is killed (None: no limit).

    Returns:
        The dict the function returned.

    Raises:
        WorkerError: The process exited non-zero, timed out, or wrote no result.
    """
    with tempfile.TemporaryDirectory(prefix="ner-bench-") as scratch:
        spec_path = Path(scratch) / "spec.json"
        result_path = Path(scratch) / "result.json"
        spec_path.write_text(json.dumps({"target": target, "kwargs": kwargs, "output": str(result_path)}))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        # Keep tokenizers' own thread pool from competing with the measured torch threads.
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.worker", str(spec_path)],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise WorkerError(f"{target} did not finish within {timeout} s") from error
        if done.returncode != 0 or not result_path.is_file():
            tail = (done.stdout + done.stderr)[-4000:]
            raise WorkerError(f"{target} failed with exit code {done.returncode}:\n{tail}")
        return json.loads(result_path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the measurement process: run the spec given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    module_name, _, function_name = spec["target"].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    result = function(**spec["kwargs"])
    Path(spec["output"]).write_text(json.dumps(result, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
