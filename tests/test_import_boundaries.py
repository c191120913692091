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


# --- launch/ layout (issue 12, acceptance 6) -----------------------------------------------------
LAUNCH = REPO_ROOT / "launch"
MAX_MODULE_LINES = 400
#: Backend-neutral modules: every layer may import them; they import no backend and no pipeline code.
NEUTRAL = ("files", "fingerprints", "names", "errors", "configs", "jobs")
BACKENDS = ("launch.azure", "launch.local")
ORCHESTRATION = (
    "launch.pipeline",
    "launch.pipeline_config",
    "launch.pipeline_state",
    "launch.pipeline_run",
    "launch.steps",
    "launch.backends",
    "launch.cli",
)


def _imports(path) -> list[str]:
    """Every module a file imports, at top level or inside functions (relative imports resolved)."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                found.append(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.append(node.module)
    return found


def _offenders(paths, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path.relative_to(REPO_ROOT)} imports {name}"
        for path in paths
        for name in _imports(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden)
    )


def test_no_launch_module_is_above_400_lines() -> None:
    sizes = {
        path.relative_to(REPO_ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in LAUNCH.rglob("*.py")
    }
    too_long = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert too_long == {}, f"above {MAX_MODULE_LINES} lines: {too_long}"


def test_neutral_modules_import_no_backend_and_no_pipeline() -> None:
    paths = [LAUNCH / f"{name}.py" for name in NEUTRAL]
    assert all(path.is_file() for path in paths)
    assert _offenders(paths, (*BACKENDS, *ORCHESTRATION)) == []


def test_backends_never_import_the_pipeline() -> None:
    paths = [*(LAUNCH / "azure").rglob("*.py"), *(LAUNCH / "local").rglob("*.py")]
    assert _offenders(paths, ORCHESTRATION) == []


def test_the_launcher_writes_json_and_holds_the_lock_through_launch_files() -> None:
    # One atomic JSON writer and one workspace lock: nothing outside the local backend reaches
    # into the emulator's workspace module for them.
    outside = [p for p in LAUNCH.rglob("*.py") if "local" not in p.relative_to(LAUNCH).parts[:1]]
    assert _offenders(outside, ("launch.local.workspace",)) == []


def test_every_launch_config_is_read_by_one_loader() -> None:
    # launch.configs.load_config (file:line errors, duplicate keys refused, sha256) is the only
    # place launch/ parses YAML; everything else gets a LoadedConfig from it.
    import re

    parse = re.compile(r"\byaml\.(safe_load|load|compose|full_load|unsafe_load)\b|\bsafe_load_strict\(")
    readers = sorted(
        path.relative_to(REPO_ROOT).as_posix()
        for path in LAUNCH.rglob("*.py")
        if parse.search(path.read_text(encoding="utf-8"))
    )
    assert readers == ["launch/configs.py"]
