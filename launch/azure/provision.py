"""`ner-provision`: create or update the compute clusters; check the default datastore.

Infrastructure is kept apart from orchestration: the pipeline and the notebook only *check*
(`validate_infrastructure`); this command is the one that changes the workspace. It is
idempotent: a cluster that already matches the config is left alone, and every change is printed.
The workspace itself is never created here (see docs/azure.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from launch.azure.compute import ClusterConfig, ComputeConfig, load_compute
from launch.azure.workspace import create_ml_client, load_workspace
from launch.errors import LaunchError

_SETTINGS = ("min_instances", "max_instances", "idle_time_before_scale_down", "tier")


def _aml_compute(cluster: ClusterConfig) -> Any:
    from azure.ai.ml.entities import AmlCompute

    return AmlCompute(
        name=cluster.name,
        size=cluster.size,
        min_instances=cluster.min_instances,
        max_instances=cluster.max_instances,
        idle_time_before_scale_down=cluster.idle_time_before_scale_down,
        tier=cluster.tier,
    )


def _differences(found: Any, cluster: ClusterConfig) -> dict[str, tuple[Any, Any]]:
    diffs = {}
    for setting in _SETTINGS:
        have = getattr(found, setting, None)
        want = getattr(cluster, setting)
        if setting == "tier":
            have = str(have or "").lower().replace("lowpriority", "low_priority")
        if have != want:
            diffs[setting] = (have, want)
    return diffs


def provision(
    ml_client: Any, compute: ComputeConfig, *, dry_run: bool = False, echo: Callable = print
) -> list[str]:
    """Create missing clusters and update drifted ones; check the default datastore.

    Args:
        ml_client: An `azure.ai.ml.MLClient`.
        compute: The validated compute config.
        dry_run: Only print what would change.
        echo: Where to print progress (one line per cluster).

    Returns:
        One line per change made (empty when everything already matched).

    Raises:
        LaunchError: The workspace or its default datastore cannot be read, or a cluster exists with
            another VM size (which Azure cannot change in place) or is not an AmlCompute cluster.
    """
    from azure.core.exceptions import ResourceNotFoundError

    try:
        ml_client.workspaces.get(ml_client.workspace_name)
    except ResourceNotFoundError:
        raise LaunchError(
            f"workspace {ml_client.workspace_name!r} does not exist",
            field="workspace_name",
            fix="create it first (az ml workspace create, docs/azure.md) or fix configs/azure/workspace.yaml",
        ) from None
    try:
        store = ml_client.datastores.get_default()
    except ResourceNotFoundError:
        raise LaunchError(
            "the workspace has no default datastore",
            field="datastore",
            fix="link the workspace storage account (docs/azure.md, 'Storage')",
        ) from None
    echo(f"default datastore: {getattr(store, 'name', store)} (ok)")

    changes: list[str] = []
    verb = "would " if dry_run else ""
    for cluster in compute.clusters.values():
        try:
            found = ml_client.compute.get(cluster.name)
        except ResourceNotFoundError:
            found = None
        if found is None:
            line = (
                f"{verb}create {cluster.role} cluster {cluster.name} ({cluster.size}, {cluster.tier}, "
                f"0..{cluster.max_instances} nodes, idle scale-down {cluster.idle_time_before_scale_down}s)"
            )
        else:
            if str(getattr(found, "type", "")).lower() != "amlcompute":
                raise LaunchError(
                    f"compute {cluster.name!r} exists but is not an AmlCompute cluster",
                    field=f"clusters.{cluster.role}.name",
                    fix="choose another cluster name in configs/azure/compute.yaml",
                )
            if str(getattr(found, "size", "")).lower() != cluster.size.lower():
                raise LaunchError(
                    f"cluster {cluster.name!r} has VM size {found.size}, the config asks for {cluster.size}; "
                    "Azure cannot change the size of an existing cluster",
                    field=f"clusters.{cluster.role}.size",
                    fix=f"set size: {found.size}, or use a new cluster name (then delete the old one)",
                )
            diffs = _differences(found, cluster)
            if not diffs:
                echo(f"{cluster.role} cluster {cluster.name}: unchanged")
                continue
            detail = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in diffs.items())
            line = f"{verb}update {cluster.role} cluster {cluster.name}: {detail}"
        echo(line)
        changes.append(line)
        if not dry_run:
            ml_client.compute.begin_create_or_update(_aml_compute(cluster)).result()
    echo(f"{len(changes)} change(s){' planned' if dry_run else ''}")
    return changes


def main(argv: Sequence[str] | None = None) -> int:
    """Console script `ner-provision`.

    Args:
        argv: Command-line arguments (default: `sys.argv[1:]`).

    Returns:
        Exit status: 0 on success, 2 on a configuration or infrastructure error.
    """
    parser = argparse.ArgumentParser(
        prog="ner-provision", description="Create or update the Azure ML compute clusters (idempotent)."
    )
    parser.add_argument("--workspace", default="configs/azure/workspace.yaml", help="workspace config file")
    parser.add_argument("--compute", default="configs/azure/compute.yaml", help="compute config file")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    args = parser.parse_args(argv)
    try:
        workspace = load_workspace(args.workspace)
        compute = load_compute(args.compute)
        provision(create_ml_client(workspace), compute, dry_run=args.dry_run)
    except LaunchError as error:
        print(f"ner-provision: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
