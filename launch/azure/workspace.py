"""Workspace reference from `configs/azure/workspace.yaml` and the lazily built `MLClient`.

Values may name environment variables (`${AZURE_SUBSCRIPTION_ID}`) so the file holds no ids or
secrets. Authentication is `DefaultAzureCredential` (managed identity, Azure CLI login,
environment variables), never keys in files. azure-ai-ml is imported only when a client is
built, so importing this module stays fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.configs import LoadedConfig, load_config

FIELDS = ("subscription_id", "resource_group", "workspace_name")
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PLACEHOLDER = re.compile(
    r"^<.*>$|^x+$|changeme|change-me|your[-_ ]|todo|^placeholder$|^0{8}-0{4}-0{4}-0{4}-0{12}$", re.I
)


@dataclass(frozen=True)
class WorkspaceRef:
    """Where the workspace is.

    Attributes:
        subscription_id: Azure subscription id.
        resource_group: Resource group holding the workspace.
        workspace_name: Azure ML workspace name.
        source: The loaded config file (for hash tags and error messages).
    """

    subscription_id: str
    resource_group: str
    workspace_name: str
    source: LoadedConfig | None = None


def _resolve(config: LoadedConfig, field: str, value: Any, environ: Mapping[str, str]) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise config.error(
            f"{field} is missing",
            field=field,
            fix=f"set {field} in {config.name} (a value or ${{ENV_VAR}}), see docs/azure.md",
        )
    text = str(value).strip()
    for name in _ENV_REFERENCE.findall(text):
        if not environ.get(name, "").strip():
            raise config.error(
                f"{field} reads the environment variable {name}, which is not set",
                field=field,
                fix=f"export {name}=<value> (see docs/azure.md), or write the value in {config.name}",
            )
    resolved = _ENV_REFERENCE.sub(lambda match: environ[match.group(1)].strip(), text)
    if _PLACEHOLDER.search(resolved):
        raise config.error(
            f"{field} is a placeholder ({resolved!r})",
            field=field,
            fix=f"replace it with your real {field.replace('_', ' ')} (az account show / az ml workspace list)",
        )
    return resolved


def parse_workspace(config: LoadedConfig, environ: Mapping[str, str] | None = None) -> WorkspaceRef:
    """Validate a loaded workspace config and resolve its `${VAR}` references.

    Args:
        config: The loaded `configs/azure/workspace.yaml`.
        environ: Environment variables to read (default: `os.environ`).

    Raises:
        LaunchError: A value is missing, names an unset variable, or is a placeholder (names the field).
    """
    environ = os.environ if environ is None else environ
    data = config.data if isinstance(config.data, Mapping) else {}
    values = {field: _resolve(config, field, data.get(field), environ) for field in FIELDS}
    return WorkspaceRef(**values, source=config)


def load_workspace(path: str | Path, environ: Mapping[str, str] | None = None) -> WorkspaceRef:
    """Load `configs/azure/workspace.yaml` (see `parse_workspace`)."""
    return parse_workspace(load_config(path), environ)


def create_ml_client(workspace: WorkspaceRef, credential: Any = None) -> Any:
    """Build an `azure.ai.ml.MLClient` for the workspace (no network call happens here).

    Args:
        workspace: The workspace reference.
        credential: An azure-identity credential; `DefaultAzureCredential()` when None.
    """
    from azure.ai.ml import MLClient

    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return MLClient(
        credential=credential,
        subscription_id=workspace.subscription_id,
        resource_group_name=workspace.resource_group,
        workspace_name=workspace.workspace_name,
    )
