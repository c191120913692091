"""Build a registered environment the way Azure ML would: only the packages its conda file declares.

Azure ML builds a job's image from the environment's conda file, so a job that imports a package
the file does not declare fails there with `ModuleNotFoundError`. The emulator reproduces that
with a virtual environment per registered version (`<workspace>/envs/<name>/<version>/`) whose
site-packages holds links to the installed distributions that pip would install for the conda
file's `pip:` list (the declared names, their extras and their dependencies, resolved against
this machine's installed metadata) and nothing else. Its `bin/python` is this machine's
interpreter, so the job runs on the same Python; only what it can import differs.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from launch.errors import LaunchError

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?")
#: Conda packages that are not Python distributions (the interpreter itself).
_NOT_DISTRIBUTIONS = {"python"}


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(conda: Mapping[str, Any]) -> dict[str, set[str]]:
    """Distribution name -> requested extras, from a conda YAML's dependencies and its `pip:` list.

    Options (`--index-url ...`) and comments are skipped; conda entries are read as names.
    """
    declared: dict[str, set[str]] = {}

    def add(spec: str) -> None:
        spec = spec.split("#", 1)[0].strip()
        if not spec or spec.startswith("-"):
            return
        match = _NAME.match(spec)
        if match is None:
            return
        name = normalize(match.group(1).split("=")[0])
        if name in _NOT_DISTRIBUTIONS:
            return
        extras = {e.strip() for e in (match.group(2) or "[]")[1:-1].split(",") if e.strip()}
        declared.setdefault(name, set()).update(extras)

    for item in conda.get("dependencies") or []:
        if isinstance(item, Mapping):
            for spec in item.get("pip") or []:
                add(str(spec))
        else:
            add(str(item).split("=")[0])
    return declared


def installed_closure(declared: Mapping[str, set[str]]) -> dict[str, metadata.Distribution]:
    """The installed distributions pip would install for `declared` (dependencies and extras included).

    Declared names that are not installed on this machine are skipped (they cannot be linked).
    """
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    stack = [(name, set(extras)) for name, extras in declared.items()]
    while stack:
        name, extras = stack.pop()
        if name in found and extras <= extras_seen.get(name, set()):
            continue
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found[name] = dist
        extras_seen.setdefault(name, set()).update(extras)
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({"extra": extra}) for extra in {"", *extras}
            ):
                continue
            stack.append((normalize(requirement.name), set(requirement.extras)))
    return found


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """First path components (packages, modules, `.libs`, dist-info, `.pth`) a distribution installs."""
    entries = set()
    for file in dist.files or []:
        first = Path(str(file)).parts[0] if Path(str(file)).parts else ""
        if first and first != ".." and first != "__pycache__":
            entries.add(first)
    return entries


def build_environment(target: Path, conda: Mapping[str, Any]) -> Path:
    """Create (once) the virtual environment for a conda definition; returns its folder.

    Raises:
        LaunchError: The conda file declares no pip packages at all.
    """
    python = target / "bin" / "python"
    if python.exists():
        return target
    declared = declared_requirements(conda)
    if not declared:
        raise LaunchError(
            "the environment's conda file declares no packages",
            field="conda_file",
            fix="list the job's packages under `dependencies: - pip: [name==version, ...]`",
        )
    closure = installed_closure(declared)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        site = staging / "lib" / version / "site-packages"
        site.mkdir(parents=True)
        (staging / "bin").mkdir()
        base = Path(sys._base_executable).resolve()  # type: ignore[attr-defined]
        for name in ("python", "python3", version):
            (staging / "bin" / name).symlink_to(base)
        (staging / "pyvenv.cfg").write_text(
            f"home = {base.parent}\ninclude-system-site-packages = false\n"
            f"version = {'.'.join(map(str, sys.version_info[:3]))}\n",
            encoding="utf-8",
        )
        for dist in closure.values():
            root = Path(str(dist.locate_file("")))
            for entry in _top_level_entries(dist):
                link = site / entry
                if not link.exists() and (root / entry).exists():
                    link.symlink_to(root / entry)
        (staging / "declared.txt").write_text(
            "".join(f"{name}\n" for name in sorted(closure)), encoding="utf-8"
        )
        try:
            staging.rename(target)
        except OSError:
            if not python.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def environment_path(env_dir: Path) -> str:
    """`PATH` for a job in the environment: its `bin/` first, then the system's."""
    return os.pathsep.join([str(env_dir / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])


_MISSING = re.compile(r"No module named '([A-Za-z0-9_]+)|package '([A-Za-z0-9_]+)'")


def undeclared_hint(log_text: str, environment: str, conda_source: str, declared: Iterable[str]) -> str:
    """An explanation for Azure users when a job failed on a package its environment lacks.

    Args:
        log_text: Tail of the job log.
        environment: `name:version` of the job's environment.
        conda_source: Where the conda file came from (for the fix).
        declared: Distribution names linked into the environment.

    Returns:
        One paragraph per missing module that is installed on this machine but not declared
        (empty when the failure was something else).
    """
    linked = set(declared)
    installed = metadata.packages_distributions()
    hints = []
    for match in _MISSING.finditer(log_text):
        module = match.group(1) or match.group(2)
        dists = installed.get(module, [])
        if not dists or any(normalize(d) in linked for d in dists):
            continue
        wanted = ", ".join(f"{d}=={metadata.version(d)}" for d in sorted(set(dists)))
        hints.append(
            f"the job imports `{module}`, which environment {environment} does not declare: it is installed "
            f"on this machine but Azure ML builds the job's image from the conda file only, so the job "
            f"fails there the same way. Fix: add `{wanted}` to the pip list of {conda_source}, bump the "
            "environment's version and run again (or stop importing it in the job)."
        )
    return "\n".join(dict.fromkeys(hints))
