"""Reading YAML config files with errors that name the file and line, and duplicate keys refused.

`yaml.safe_load` on a string reports `<unicode string>` as the place of a syntax error and lets
the last of two equal keys win silently. Every YAML file a tool reads from the user goes through
`load_yaml_file` instead. Pure Python (no torch): the launcher may use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from ner_lightning.errors import ConfigError

#: Suffixes that mark a `--config` value as a file name (anything else may be inline YAML).
YAML_SUFFIXES: Final = (".yaml", ".yml", ".json")
#: Options of the training command line whose value is a config file.
CONFIG_OPTIONS: Final = ("--config", "-c")


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key written twice in one mapping."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen and key != "<<":
            raise yaml.constructor.ConstructorError(
                f"while reading a mapping (first {key!r} on line {seen[key] + 1})",
                node.start_mark,
                f"found the key {key!r} twice (first on line {seen[key] + 1}); YAML would silently keep the last one",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def safe_load_strict(text: str) -> Any:
    """`yaml.safe_load` that refuses a key written twice in one mapping.

    For callers that read the bytes themselves (to hash them); `load_yaml_file` is the usual entry.

    Raises:
        yaml.YAMLError: Malformed YAML or a duplicate key (with `problem` and `problem_mark`).
    """
    return yaml.load(text, Loader=_StrictLoader)


def load_yaml_file(path: str | Path, *, field: str | None = None) -> Any:
    """Parse a YAML file; a syntax error or a duplicate key names the file, line and column.

    Args:
        path: The file.
        field: Option or config key that named the file, for the message (e.g. `--config`).

    Returns:
        The parsed document (None for an empty file).

    Raises:
        ConfigError: The file is missing, is a folder, is not UTF-8 text, is malformed YAML or has
            a key twice in one mapping.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError("config file does not exist", path=path, field=field, fix="check the path")
    if path.is_dir():
        raise ConfigError(
            "expected a YAML file, found a folder",
            path=path,
            field=field,
            fix="pass the file inside the folder",
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})",
            path=path,
            field=field,
            fix="save the file as UTF-8",
        ) from None
    except OSError as error:
        raise ConfigError(
            f"cannot read the file: {error.strerror}", path=path, field=field, fix="check its permissions"
        ) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = " ".join(part for part in (error.context, error.problem) if part)
        duplicate = "twice" in (error.problem or "")
        raise ConfigError(
            f"{'duplicate key' if duplicate else 'malformed YAML'}: {problem}"
            + (f" (column {mark.column + 1})" if mark is not None else ""),
            path=path,
            line=mark.line + 1 if mark is not None else None,
            field=field,
            fix="keep one of the two entries" if duplicate else "fix the YAML syntax at that line",
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(
            f"malformed YAML: {error}", path=path, field=field, fix="fix the YAML syntax"
        ) from None


def config_file_arguments(args: Sequence[str]) -> list[str]:
    """The values of the `--config`/`-c` options of a training command line, in order."""
    values: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg in CONFIG_OPTIONS and index + 1 < len(args):
            values.append(args[index + 1])
        elif arg.startswith("--config="):
            values.append(arg.split("=", 1)[1])
    return values


def check_config_files(args: Sequence[str]) -> None:
    """Parse every `--config` file of a training command line before LightningCLI reads it.

    LightningCLI would report a syntax error at `<unicode string>` after a page of usage text, and
    keep the last of two equal keys. Values that are neither files nor YAML file names are left
    to LightningCLI (it also takes inline YAML).

    Raises:
        ConfigError: A config file is missing, malformed, has a duplicate key, or does not hold a
            mapping.
    """
    for value in config_file_arguments(args):
        path = Path(value)
        if not path.is_file() and not value.lower().endswith(YAML_SUFFIXES):
            continue
        document = load_yaml_file(path, field="--config")
        if document is not None and not isinstance(document, dict):
            raise ConfigError(
                f"a config file holds a mapping of options, found a {type(document).__name__}",
                path=path,
                field="--config",
                fix="write `section:` / `  key: value` lines, e.g. `model:` then `  learning_rate: 5e-5`",
            )
