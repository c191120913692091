"""Fail fast when the workspace's infrastructure is not there; never create anything.

The orchestration calls `validate_infrastructure` before submitting anything. It reads the
workspace, its default datastore and both compute clusters, and raises ONE error that lists
everything missing or misconfigured with the command that fixes it (`ner-provision`, or the
`az` command for the workspace itself, which the project never creates).
"""

from __future__ import annotations

from typing import Any

from launch.azure.compute import ComputeConfig
from launch.errors import LaunchError

PROVISION_COMMAND = (
    "ner-provision --workspace configs/azure/workspace.yaml --compute configs/azure/compute.yaml"
)


def _workspace_create_command(ml_client: Any) -> str:
    return (
        f"az ml workspace create --name {ml_client.workspace_name}"
        f" --resource-group {getattr(ml_client, 'resource_group_name', '<resource group>')}"
    )


def infrastructure_problems(ml_client: Any, compute: ComputeConfig) -> list[str]:
    """Everything missing or misconfigured, one line each with its fix (empty when all is well).

    Args:
        ml_client: An `azure.ai.ml.MLClient` (or an object with the same operations).
        compute: The validated compute config.
    """
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    problems: list[str] = []
    try:
        ml_client.workspaces.get(ml_client.workspace_name)
    except ResourceNotFoundError:
        # Nothing else can be read without the workspace.
        return [
            f"workspace {ml_client.workspace_name!r} does not exist -> {_workspace_create_command(ml_client)}"
        ]
    except HttpResponseError as error:
        return [
            f"workspace {ml_client.workspace_name!r} cannot be read ({error.message}) -> see docs/azure.md roles"
        ]

    try:
        ml_client.datastores.get_default()
    except (ResourceNotFoundError, HttpResponseError) as error:
        problems.append(
            f"the workspace has no readable default datastore ({type(error).__name__}) -> "
            "az ml datastore update / check the storage account link and roles (docs/azure.md)"
        )

    for cluster in compute.clusters.values():
        try:
            found = ml_client.compute.get(cluster.name)
        except ResourceNotFoundError:
            problems.append(f"{cluster.role} cluster {cluster.name!r} does not exist -> {PROVISION_COMMAND}")
            continue
        except HttpResponseError as error:
            problems.append(f"{cluster.role} cluster {cluster.name!r} cannot be read ({error.message})")
            continue
        kind = str(getattr(found, "type", "")).lower()
        if kind != "amlcompute":
            problems.append(
                f"{cluster.role} cluster {cluster.name!r} is a {kind or 'unknown'} compute, not an AmlCompute "
                f"cluster -> choose another name in configs/azure/compute.yaml and run {PROVISION_COMMAND}"
            )
            continue
        min_instances = getattr(found, "min_instances", None)
        max_instances = getattr(found, "max_instances", None)
        if min_instances != 0:
            problems.append(
                f"{cluster.role} cluster {cluster.name!r} has min_instances={min_instances} (must be 0) "
                f"-> {PROVISION_COMMAND}"
            )
        if not isinstance(max_instances, int) or max_instances < 1 or max_instances > cluster.max_instances:
            problems.append(
                f"{cluster.role} cluster {cluster.name!r} has max_instances={max_instances} "
                f"(configured bound: {cluster.max_instances}) -> {PROVISION_COMMAND}"
            )
    return problems


def validate_infrastructure(ml_client: Any, compute: ComputeConfig) -> None:
    """Check workspace, default datastore, GPU and CPU clusters and their auto-scale limits.

    Args:
        ml_client: An `azure.ai.ml.MLClient`.
        compute: The validated compute config.

    Raises:
        LaunchError: One message listing everything missing, each with the command that creates it.
    """
    problems = infrastructure_problems(ml_client, compute)
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise LaunchError(
            f"Azure ML infrastructure is not ready ({len(problems)} problem(s)):\n{listing}\n",
            field="infrastructure",
            fix=f"run the commands above (nothing was created); for clusters: {PROVISION_COMMAND}",
        )
