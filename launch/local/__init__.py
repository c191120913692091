"""The local backend: an Azure ML workspace emulator (`EmulatedMLClient`) driven by `AzureBackend`."""

from launch.local.client import EmulatedMLClient
from launch.local.workspace import DEFAULT_WORKSPACE, LocalWorkspace

__all__ = ["DEFAULT_WORKSPACE", "EmulatedMLClient", "LocalWorkspace"]
