"""Local backend: a workspace folder with MLflow on SQLite, subprocess jobs and Optuna sweeps."""

from launch.local.backend import LocalBackend
from launch.local.workspace import DEFAULT_WORKSPACE, LocalWorkspace

__all__ = ["DEFAULT_WORKSPACE", "LocalBackend", "LocalWorkspace"]
