"""YAML parsing that refuses duplicate keys.

PyYAML's `safe_load` keeps the last of two equal keys in a mapping, so a config that sets
`learning_rate` twice silently trains with the second value. Every launcher config goes through
`safe_load_unique`, which raises `DuplicateKeyError` naming the key and both lines instead.
"""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKeyError(yaml.YAMLError):
    """A mapping holds the same key twice.

    Attributes:
        key: The repeated key.
        first_line: 1-based line of its first occurrence.
        problem_mark: Where the repeat is (PyYAML mark, 0-based line), as PyYAML's own errors carry it.
        problem: One-line description, as PyYAML's own errors carry it.
    """

    def __init__(self, key: str, first_line: int, mark: yaml.Mark) -> None:
        self.key = key
        self.first_line = first_line
        self.problem_mark = mark
        self.problem = (
            f"duplicate key {key!r} (first at line {first_line}, again at line {mark.line + 1}); "
            "YAML would silently keep the last one"
        )
        super().__init__(self.problem)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key they already hold."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: PyYAML reports it in super() below
                continue
            if first is not None:
                raise DuplicateKeyError(str(key), first, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping
)


def safe_load_unique(text: str) -> Any:
    """`yaml.safe_load` that raises `DuplicateKeyError` on a repeated mapping key.

    Args:
        text: YAML text.

    Returns:
        The parsed document (None for an empty one).

    Raises:
        yaml.YAMLError: Malformed YAML; `DuplicateKeyError` for a repeated key (with `problem_mark`).
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)
