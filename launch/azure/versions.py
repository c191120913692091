"""The immutability rule shared by data assets and environments on Azure ML.

A name + version, once registered, never changes. Each registration carries the fingerprint of
its content in a tag; registering the same name + version again is a reuse when the fingerprint
matches, and is refused (asking for the next version) when it does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from launch.errors import LaunchError


def next_version(existing: list[str], current: str) -> str:
    """The version to suggest after `current`, given the registered ones (numeric when possible)."""
    numbers = [int(v) for v in [*existing, current] if str(v).isdigit()]
    return str(max(numbers) + 1) if numbers else f"{current}-2"


def ensure_version(
    operations: Any,
    *,
    kind: str,
    name: str,
    version: str,
    fingerprint: str,
    fingerprint_tag: str,
    create: Callable[[], Any],
    field: str = "version",
) -> tuple[Any, bool]:
    """Reuse `name:version` when its fingerprint matches, create it when absent, refuse otherwise.

    Args:
        operations: `ml_client.data` or `ml_client.environments` (`get`, `list`).
        kind: `data asset` or `environment`, for messages.
        name: Asset name.
        version: Asset version.
        fingerprint: Fingerprint of the content to register.
        fingerprint_tag: Tag holding the fingerprint on the registered version.
        create: Registers the version (called only when it does not exist); returns the entity.
        field: Config field named in the refusal.

    Returns:
        The registered entity and whether it was reused.

    Raises:
        LaunchError: The version exists with another (or no) fingerprint.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        existing = operations.get(name=name, version=version)
    except ResourceNotFoundError:
        return create(), False
    registered = (getattr(existing, "tags", None) or {}).get(fingerprint_tag, "")
    if registered == fingerprint:
        return existing, True
    try:
        siblings = [str(item.version) for item in operations.list(name=name)]
    except ResourceNotFoundError:
        siblings = []
    suggestion = next_version(siblings, version)
    shown = f"{registered[:12]}..." if registered else "none"
    raise LaunchError(
        f"{kind} {name}:{version} is already registered with other content (fingerprint {shown}, "
        f"now {fingerprint[:12]}...); registered versions are immutable",
        field=field,
        fix=f"register the changed {kind} as a new version, e.g. version: '{suggestion}'",
    )
