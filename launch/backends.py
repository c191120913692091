"""Backend selection for `ner-pipeline` and the notebook: `--backend local|azure` -> an `AzureBackend`.

The pipeline never chooses its backend: the CLI (or the notebook) builds one here and hands it over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from launch.errors import LaunchError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from launch.pipeline_config import PipelineConfig

#: The backends `--backend` accepts.
BACKENDS = ("local", "azure")


def make_backend(
    config: PipelineConfig, backend: str, code_dir: Path, announce: Callable[[str], Any] = print
) -> Any:
    """`AzureBackend` on the workspace that `backend` names.

    `azure`: the workspace of `configs/azure/workspace.yaml`. `local`: the emulated workspace in
    the config's workspace folder (`launch.local.EmulatedMLClient`), provisioned with the clusters
    of `configs/azure/compute.yaml` by the same `ner-provision` code a real workspace gets.
    """
    from launch.azure.backend import AzureBackend
    from launch.azure.compute import load_compute

    if backend not in BACKENDS:
        raise LaunchError(f"unknown backend {backend!r}", field="--backend", fix="use local or azure")
    if config.azure_config_dir is None:
        raise config.source.error(
            f"the {backend} backend needs `azure.config_dir`",
            field="azure.config_dir",
            fix="set azure.config_dir to the configs/azure folder (workspace.yaml, compute.yaml)",
        )
    compute = load_compute(config.azure_config_dir / "compute.yaml")
    if backend == "local":
        from launch.azure.provision import provision
        from launch.local import EmulatedMLClient

        client = EmulatedMLClient(config.workspace)
        provision(client, compute, echo=lambda line: None)
        return AzureBackend(
            client, compute, code_dir, stream_logs=config.stream, poll_s=0.5, announce=announce, name="local"
        )
    from launch.azure.workspace import create_ml_client, load_workspace

    client = create_ml_client(load_workspace(config.azure_config_dir / "workspace.yaml"))
    return AzureBackend(client, compute, code_dir, stream_logs=config.stream, announce=announce)
