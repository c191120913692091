"""Issue 2 and 5 gaps: CI runs the README's test command; every `launch` module stays torch-free."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys

import launch
from tests.conftest import REPO_ROOT

HEAVY = ("torch", "lightning", "pytorch_lightning", "transformers")


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^make test\b", readme, re.M), "the README names `make test` as the test command"
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "rm -rf .venv" in commands and "make test" in commands  # from scratch, then the README command
    assert commands.index("rm -rf .venv") < commands.index("make test")
    target = re.search(r"^test: install\n\t(.+)$", makefile, re.M)
    assert target and target.group(1).endswith('-m pytest -m "not slow"')
    assert 'pytest -m "not slow"' in readme


def test_every_launch_module_imports_without_torch_lightning_transformers() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(launch.__path__, "launch."))
    assert {"launch.pipeline", "launch.cli", "launch.local.client", "launch.selection"} <= set(modules)
    code = f"import sys; import {', '.join(modules)}; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    loaded = sorted(m for m in out.split() if m.split(".")[0] in HEAVY)
    assert loaded == [], f"launch pulled in {loaded}"
