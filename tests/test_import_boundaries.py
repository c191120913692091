"""The launcher never imports torch, lightning or transformers; the training package never imports azure."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY = ("torch", "lightning", "transformers", "pytorch_lightning")


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(out.stdout.split())


def test_launch_imports_without_torch_lightning_transformers() -> None:
    modules = _modules_after_import(
        "import launch, launch.jobs, launch.configs, launch.search_space, launch.job_specs, launch.azure.backend, "
        "launch.session, launch.report, launch.charts"
    )
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == [], f"launch pulled in {loaded}"


def test_training_package_never_imports_azure() -> None:
    offenders = []
    for path in (REPO_ROOT / "ner_lightning").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import azure", "from azure")):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}")
    assert offenders == []
