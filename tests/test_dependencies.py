"""Dependencies: the serving set stays torch-free, and pyproject, the lock and the job conda file agree."""

from __future__ import annotations

import ast
import functools
import importlib
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import pytest
import yaml
from packaging.utils import canonicalize_name

from launch.azure import lock
from launch.errors import LaunchError
from ner_lightning.scripts import EXTRA_MODULES, run_with_extra
from tests.conftest import REPO_ROOT

#: The `ner-predict` console script's module: everything it reaches must run on the base install.
SERVING_ENTRY = "ner_lightning.onnx.predict_cli"
ENVIRONMENT_FILE = REPO_ROOT / "configs" / "azure" / "environment" / "environment.yaml"


def _module_file(module: str) -> Path | None:
    """File of a first-party module (`ner_lightning.x.y`), or None when it is not one."""
    if module.split(".")[0] not in ("ner_lightning", "launch"):
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every module an import statement of the file names (module level and inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # `from package import submodule` imports the submodule too.
            found += [
                (f"{name}.{alias.name}", node.lineno)
                for alias in node.names
                if _module_file(f"{name}.{alias.name}")
            ]
    return found


def _third_party_imports(entry: str) -> dict[str, list[str]]:
    """Third-party top-level names imported by `entry` and every first-party module it reaches."""
    seen: set[str] = set()
    pending = [entry]
    third_party: dict[str, list[str]] = {}
    while pending:
        module = pending.pop()
        # Importing a module runs its parent packages' __init__ first.
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            path = _module_file(name)
            if path is None or name in seen:
                continue
            seen.add(name)
            for imported, line in _imports(path, name):
                top = imported.split(".")[0]
                if _module_file(imported) or top in ("ner_lightning", "launch"):
                    pending.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third_party.setdefault(top, []).append(f"{path.relative_to(REPO_ROOT)}:{line}")
    return third_party


@functools.cache
def _import_names() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions(import_name: str) -> set[str]:
    """Installed distributions that provide a top-level import name (`yaml` -> {"pyyaml"})."""
    return {canonicalize_name(d) for d in _import_names().get(import_name, [])}


def _declared(extras: list[str]) -> set[str]:
    return {canonicalize_name(r.name) for r in lock.project_requirements(lock.PYPROJECT, extras)}


def test_ner_predict_imports_only_the_serving_base_set() -> None:
    base = _declared([])
    assert base == {"numpy", "onnxruntime", "tokenizers"}
    imported = _third_party_imports(SERVING_ENTRY)
    assert {"numpy", "onnxruntime", "tokenizers"} <= set(imported), "the walk should reach the predictor"
    outside = {
        name: places
        for name, places in imported.items()
        if not _distributions(name) or not _distributions(name) <= base
    }
    assert outside == {}, (
        "ner-predict must run on the base install (numpy, onnxruntime, tokenizers); these imports need more. "
        "Move the code that needs them out of the modules ner-predict reaches (a lazy import inside a reached "
        "module counts too), or add the package to pyproject's base dependencies"
    )


def test_the_import_walk_follows_first_party_modules_to_their_heavy_imports() -> None:
    """From the conversion entry point the walk reaches torch (via the model), so one on the serving path would show."""
    imported = _third_party_imports("ner_lightning.onnx.convert")
    assert {"torch", "transformers", "onnx", "onnxruntime"} <= set(imported)


def test_every_package_the_jobs_import_is_declared_in_the_conda_file() -> None:
    conda = lock.parse_conda(lock.CONDA_FILE.read_text(encoding="utf-8"))
    undeclared = {}
    for path in sorted((REPO_ROOT / "ner_lightning").rglob("*.py")):
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for imported, line in _imports(path, module):
            top = imported.split(".")[0]
            if top in sys.stdlib_module_names or top in ("__future__", "ner_lightning"):
                continue
            distributions = _distributions(top)
            if not distributions or not distributions & set(conda.pins):
                undeclared.setdefault(top, []).append(f"{path.relative_to(REPO_ROOT)}:{line}")
    assert undeclared == {}, "add the package to pyproject's `train` (or `job`) extra and run `make lock`"


def test_lock_and_conda_file_are_what_the_installed_environment_gives() -> None:
    lock_text, conda_text = lock.generate()
    assert lock.LOCK_FILE.read_text(encoding="utf-8") == lock_text, (
        "requirements/lock.txt differs from the installed environment: `make install`, or `make lock`"
    )
    assert lock.CONDA_FILE.read_text(encoding="utf-8") == conda_text, "conda.yaml is stale: run `make lock`"


def test_conda_file_pins_every_job_package_at_its_locked_version() -> None:
    python, pins = lock.parse_lock(lock.LOCK_FILE.read_text(encoding="utf-8"))
    conda = lock.parse_conda(lock.CONDA_FILE.read_text(encoding="utf-8"))
    assert conda.python == python
    missing = sorted(set(conda.pins) - set(pins))
    assert missing == [], f"declared in conda.yaml but not resolved from pyproject.toml: {missing}"
    differ = {
        key: (pin.version, pins[key].version)
        for key, pin in conda.pins.items()
        if lock.Pin(pin.name, pin.version).public_version != pins[key].version
    }
    assert differ == {}
    # Every direct requirement of the `job` extra (sentencepiece included) is in the job environment.
    assert _declared([lock.JOB_EXTRA]) - set(conda.pins) == set()
    assert {"sentencepiece", "torch", "lightning", "azureml-mlflow", "onnxruntime"} <= set(conda.pins)
    # The CUDA torch wheel, selected by its exact label; one package index, never an extra one.
    assert conda.pins["torch"].version == f"{pins['torch'].version}+{lock.TORCH_CUDA}"
    assert conda.pip_options == (f"--index-url {lock.PACKAGE_INDEX}", f"--find-links {lock.TORCH_FIND_LINKS}")


def test_pyproject_ranges_admit_every_locked_version() -> None:
    _, pins = lock.parse_lock(lock.LOCK_FILE.read_text(encoding="utf-8"))
    for requirement in lock.project_requirements(lock.PYPROJECT, lock.LOCK_EXTRAS):
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        assert key in pins, f"{requirement} is declared but not locked: run `make lock`"
        assert requirement.specifier.contains(pins[key].version, prereleases=True), (requirement, pins[key])


def test_base_image_is_pinned_by_tag_or_digest() -> None:
    image = yaml.safe_load(ENVIRONMENT_FILE.read_text(encoding="utf-8"))["image"]
    assert "@sha256:" in image or re.fullmatch(r"[^@]+:[0-9][\w.-]*", image), image
    assert not image.endswith(":latest")


def test_install_files_never_use_an_extra_index() -> None:
    for path in (REPO_ROOT / "Makefile", lock.CONDA_FILE, REPO_ROOT / ".ci" / "run"):
        commands = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")
        ]
        assert not any("--extra-index-url" in line for line in commands), path


def test_make_install_installs_the_lock_and_every_extra() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert "-c $(LOCK) torch" in makefile and "-c $(LOCK) -e '.[all,dev]'" in makefile
    assert makefile.index("-c $(LOCK) torch") < makefile.index("-e '.[all,dev]'"), "torch goes first"


def test_conda_lines_that_are_not_exact_pins_are_refused() -> None:
    text = "dependencies:\n  - python=3.11\n  - pip:\n      - torch>=2.4\n"
    with pytest.raises(LaunchError, match=r"torch>=2.4.*not an exact") as info:
        lock.parse_conda(text, path="conda.yaml")
    assert info.value.field == "dependencies.pip"
    with pytest.raises(LaunchError, match="no `pip:` list"):
        lock.parse_conda("dependencies:\n  - python=3.11\n", path="conda.yaml")


def test_malformed_lock_line_names_the_line() -> None:
    with pytest.raises(LaunchError, match="not a `name==version` pin") as info:
        lock.parse_lock("# python==3.11.7 on linux x86_64\nnumpy==2.0\nonnxruntime>=1.19\n", path="lock.txt")
    assert info.value.line == 3


def test_check_command_reports_a_stale_lock(tmp_path: Path) -> None:
    stale = tmp_path / "lock.txt"
    stale.write_text(lock.LOCK_FILE.read_text(encoding="utf-8").replace("numpy==", "numpy==0.0.0.dev0+", 1))
    out = subprocess.run(
        [sys.executable, "-m", "launch.azure.lock", "check", "--lock", str(stale)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert str(stale) in out.stderr and "make lock" in out.stderr and "Traceback" not in out.stderr


def test_check_command_names_a_package_missing_from_the_environment(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        lock.PYPROJECT.read_text(encoding="utf-8").replace(
            '"numpy>=1.26",', '"numpy>=1.26",\n  "surely-not-installed-package>=1",', 1
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "launch.azure.lock", "check", "--pyproject", str(pyproject)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "surely-not-installed-package>=1 (needed by pyproject.toml) is not installed" in out.stderr
    assert "Traceback" not in out.stderr


def test_each_extra_probe_module_comes_from_that_extra() -> None:
    for extra, modules in EXTRA_MODULES.items():
        closure = set(lock.resolve_installed(lock.project_requirements(lock.PYPROJECT, [extra])))
        strays = [m for m in modules if not _distributions(m.split(".")[0]) & closure]
        assert strays == [], f"{strays} are not installed by the `{extra}` extra"


def test_every_console_script_points_at_a_function() -> None:
    with lock.PYPROJECT.open("rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    assert {"ner-predict", "ner-data", "ner-train", "ner-convert", "ner-pipeline", "ner-provision"} <= set(
        scripts
    )
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_a_command_whose_extra_is_missing_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(EXTRA_MODULES, "gpu", ("surely_not_installed_module", "json"))
    assert run_with_extra("ner-x", "json:dumps", ("gpu",)) == 2
    err = capsys.readouterr().err
    assert "ner-x: needs the `gpu` extra (surely_not_installed_module missing)" in err
    assert "pip install 'ner-lightning[gpu]'" in err
    # One complete extra among the alternatives is enough.
    assert run_with_extra("ner-x", "platform:python_version", ("gpu", "train")) == platform.python_version()


def test_a_lock_made_with_a_cuda_torch_build_is_refused() -> None:
    pins = {p.key: p for p in (lock.Pin("torch", "2.14.1"), lock.Pin("nvidia-cublas", "13.1.1.3"))}
    with pytest.raises(LaunchError, match=r"CUDA build \(it brought nvidia-cublas\)") as info:
        lock.refuse_gpu_build_packages(pins)
    assert info.value.field == "torch" and "TORCH_INDEX=https://download.pytorch.org/whl/cpu" in str(
        info.value
    )
    lock.refuse_gpu_build_packages({"torch": lock.Pin("torch", "2.13.0+cpu")})
