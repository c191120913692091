"""Names that become folder names, asset names or MLflow filter values, and the one pattern they follow.

A pipeline name, dataset name and version, experiment and registered model name end up as path
components in the workspace (`pipelines/<name>_state.json`, `assets/<dataset>/<version>/`), as Azure
ML entity names, and inside MLflow search filters (`name = '<model>'`). One pattern, checked when a
config is loaded and before any step runs, keeps all three safe: it is the intersection of what
Azure ML accepts for asset and model names and what is a plain, single path component everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

#: Letters, digits, `.`, `_` and `-`; starts with a letter or digit; at most 128 characters.
#: So no `/`, `\\`, `..` alone, quotes, spaces or control characters.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULE = (
    "use 1-128 characters from letters, digits, '.', '_' and '-', starting with a letter or digit "
    "(no '/', '..', quotes or spaces)"
)


def is_safe_name(value: object) -> bool:
    """Whether `value` is a string that matches `NAME_PATTERN` in full."""
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


def confined(root: Path, *parts: str) -> Path:
    """`root / parts...`, refused when the resolved result is not inside the resolved `root`.

    Args:
        root: The folder every write and delete must stay in.
        *parts: Path components below it.

    Returns:
        The joined path.

    Raises:
        ValueError: The path resolves outside `root` (a `..`, an absolute part or a link).
    """
    path = root.joinpath(*parts)
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise ValueError(f"{path} resolves to {resolved}, outside {resolved_root}")
    return path
