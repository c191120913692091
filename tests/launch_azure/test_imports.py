"""The Azure launcher imports without torch/lightning/transformers (and without azure) and fast."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

MODULES = (
    "launch.configs",
    "launch.search_space",
    "launch.job_specs",
    "launch.azure.workspace",
    "launch.azure.compute",
    "launch.azure.infrastructure",
    "launch.azure.provision",
    "launch.azure.assets",
    "launch.azure.environment",
    "launch.azure.entities",
    "launch.azure.submit",
    "launch.azure.backend",
)


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout


def test_no_heavy_or_azure_modules_are_imported():
    out = _run(f"import sys; import {', '.join(MODULES)}; print('\\n'.join(sys.modules))")
    heavy = sorted(
        m for m in out.split() if m.split(".")[0] in ("torch", "lightning", "transformers", "azure")
    )
    assert heavy == [], heavy


def test_importing_the_launcher_takes_under_a_second():
    # -X importtime reports cumulative microseconds per module on stderr; sum the top-level ones.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {', '.join(MODULES)}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    ours = [line for line in result.stderr.splitlines() if line.rstrip().endswith(MODULES)]
    cumulative = {line.split("|")[2].strip(): int(line.split("|")[1]) for line in ours}
    assert set(cumulative) == set(MODULES)
    assert sum(cumulative.values()) < 1_000_000, cumulative
