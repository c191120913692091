"""Load config files once, hash their bytes, and hand them to jobs verbatim.

A loaded config is deeply frozen (mappings become `MappingProxyType`, lists become tuples), so
nothing in the launcher can change what a job will read: the job receives the file itself as a
`uri_file` input, and every job is tagged with the sha256 of each file's bytes
(`config_sha256.<file name>`), the same hash the training code logs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from launch.errors import LaunchError
from launch.jobs import JobInput
from ner_lightning.config_files import safe_load_strict
from ner_lightning.contract import TAG_CONFIG_SHA256_PREFIX


def freeze(value: Any) -> Any:
    """Return a deeply read-only copy: mappings -> MappingProxyType, lists -> tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """Return a plain, mutable deep copy (dicts and lists) of a frozen value, e.g. to write YAML."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [thaw(item) for item in value]
    return value


@dataclass(frozen=True)
class LoadedConfig:
    """One config file, read once.

    Attributes:
        path: Absolute path of the file.
        name: File name (the key of its hash tag; unique among the configs of a job).
        sha256: Hex sha256 of the file's bytes.
        data: Parsed YAML, deeply frozen.
        text: The file's text, exactly as read (what was hashed).
    """

    path: Path
    name: str
    sha256: str
    data: Any
    text: str

    def get(self, dotted: str, default: Any = None) -> Any:
        """Value at a dotted key (`limits.max_total_trials`), or `default` when absent."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def line_of(self, dotted: str) -> int | None:
        """1-based line of a dotted key in the file (the deepest part that exists), for error messages."""
        try:
            node = yaml.compose(self.text)
        except yaml.YAMLError:
            return None
        line = None
        for part in dotted.split("."):
            if not isinstance(node, yaml.MappingNode):
                break
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        return line

    def error(self, message: str, *, field: str, fix: str) -> LaunchError:
        """A LaunchError located at `field` of this file (file, line and field name)."""
        return LaunchError(message, path=self.path, line=self.line_of(field), field=field, fix=fix)


def load_config(path: str | Path) -> LoadedConfig:
    """Read a YAML config file once: bytes -> sha256 -> frozen parsed value.

    Args:
        path: The config file.

    Returns:
        The loaded, frozen config.

    Raises:
        LaunchError: The file does not exist, is not UTF-8, or is not valid YAML (with its line).
    """
    file = Path(path).expanduser().resolve()
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise LaunchError(
            "config file does not exist",
            path=file,
            fix="check the path, or create the file from the example in configs/",
        ) from None
    except IsADirectoryError:
        raise LaunchError(
            "config path is a folder, not a file", path=file, fix="name the YAML file itself"
        ) from None
    return _parse(file, raw)


def config_from_text(text: str, path: str | Path) -> LoadedConfig:
    """Parse YAML text as if it were the file `path` (text generated before it is written, e.g. a lock file).

    Raises:
        LaunchError: The text is not valid YAML (with its line), or repeats a key.
    """
    return _parse(Path(path).expanduser().absolute(), text.encode("utf-8"))


def _parse(file: Path, raw: bytes) -> LoadedConfig:
    """Decode, parse strictly (duplicate keys refused) and freeze; errors name the file and line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LaunchError(
            f"config file is not UTF-8 text ({error})", path=file, fix="save it as UTF-8"
        ) from None
    try:
        data = safe_load_strict(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error)
        raise LaunchError(
            f"YAML syntax error: {problem}",
            path=file,
            line=mark.line + 1 if mark is not None else None,
            fix="correct the YAML at that line (indentation, quotes, ':' after keys)",
        ) from None
    return LoadedConfig(
        path=file, name=file.name, sha256=hashlib.sha256(raw).hexdigest(), data=freeze(data), text=text
    )


def load_configs(paths: Iterable[str | Path]) -> tuple[LoadedConfig, ...]:
    """Load several config files; their file names must be unique (they key the hash tags).

    Raises:
        LaunchError: A file is missing or invalid, or two files share a name.
    """
    configs = tuple(load_config(path) for path in paths)
    seen: dict[str, Path] = {}
    for config in configs:
        if config.name in seen:
            raise LaunchError(
                f"two config files are named {config.name!r} ({seen[config.name]} and {config.path})",
                path=config.path,
                fix="rename one: the file name keys its config_sha256 tag",
            )
        seen[config.name] = config.path
    return configs


def config_hashes(configs: Iterable[LoadedConfig]) -> dict[str, str]:
    """`{file name: sha256}` of the configs."""
    return {config.name: config.sha256 for config in configs}


def config_hash_tags(configs: Iterable[LoadedConfig]) -> dict[str, str]:
    """`{"config_sha256.<file name>": sha256}` tags for jobs and runs."""
    return {f"{TAG_CONFIG_SHA256_PREFIX}{name}": sha for name, sha in config_hashes(configs).items()}


def config_hashes_json(configs: Iterable[LoadedConfig]) -> str:
    """The value of `NER_CONFIG_SHA256`: a JSON object `{file name: sha256}`, keys sorted."""
    return json.dumps(config_hashes(configs), sort_keys=True)


def config_file_input(config: LoadedConfig) -> JobInput:
    """The config passed verbatim to a job, as a `uri_file` input."""
    return JobInput(type="uri_file", value=str(config.path))
