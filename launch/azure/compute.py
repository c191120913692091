"""Compute clusters from `configs/azure/compute.yaml`: one cluster per role (gpu, cpu).

Cost control is part of the contract: every cluster scales to zero (`min_instances: 0`) and has
a bounded `max_instances`; a config without them is refused before anything is submitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from launch.configs import LoadedConfig, load_config

ROLES = ("gpu", "cpu")
TIERS = ("dedicated", "low_priority")
#: A safety bound: a typo like 400 instead of 4 is refused rather than allowed to scale.
MAX_INSTANCES_LIMIT = 64


@dataclass(frozen=True)
class ClusterConfig:
    """One AmlCompute cluster.

    Attributes:
        role: `gpu` or `cpu`.
        name: Cluster name in the workspace.
        size: VM size (e.g. Standard_NC6s_v3).
        min_instances: Always 0 (scale to zero when idle).
        max_instances: Upper bound of the auto-scaler.
        idle_time_before_scale_down: Seconds an idle node is kept.
        tier: `dedicated` or `low_priority`.
    """

    role: str
    name: str
    size: str
    min_instances: int
    max_instances: int
    idle_time_before_scale_down: int
    tier: str


@dataclass(frozen=True)
class ComputeConfig:
    """The clusters by role, and the file they came from."""

    clusters: Mapping[str, ClusterConfig]
    source: LoadedConfig | None = None

    def cluster_name(self, role: str) -> str:
        """Cluster name for a job's compute role."""
        return self.clusters[role].name


def _cluster(config: LoadedConfig, role: str) -> ClusterConfig:
    base = f"clusters.{role}"
    raw = config.get(base)
    if not isinstance(raw, Mapping):
        raise config.error(f"no {role} cluster configured", field=base, fix=f"add {base} (see docs/azure.md)")
    for key in ("name", "size"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise config.error(f"{key} is missing", field=f"{base}.{key}", fix=f"set {base}.{key}")
    max_instances = raw.get("max_instances")
    if (
        isinstance(max_instances, bool)
        or not isinstance(max_instances, int)
        or not (1 <= max_instances <= MAX_INSTANCES_LIMIT)
    ):
        raise config.error(
            f"max_instances is {max_instances!r}: the cluster's size must be bounded",
            field=f"{base}.max_instances",
            fix=f"set an integer between 1 and {MAX_INSTANCES_LIMIT}",
        )
    if raw.get("min_instances", 0) != 0:
        raise config.error(
            f"min_instances is {raw.get('min_instances')!r}: idle nodes would keep costing",
            field=f"{base}.min_instances",
            fix="set min_instances: 0",
        )
    idle = raw.get("idle_time_before_scale_down", 600)
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < 0:
        raise config.error(
            f"idle_time_before_scale_down is {idle!r}",
            field=f"{base}.idle_time_before_scale_down",
            fix="give seconds as an integer >= 0",
        )
    tier = raw.get("tier", "dedicated")
    if tier not in TIERS:
        raise config.error(
            f"unknown tier {tier!r}", field=f"{base}.tier", fix=f"use one of {', '.join(TIERS)}"
        )
    return ClusterConfig(role, raw["name"], raw["size"], 0, max_instances, idle, tier)


def parse_compute(config: LoadedConfig) -> ComputeConfig:
    """Validate a loaded compute config.

    Raises:
        LaunchError: A role is missing, a name/size is missing, max_instances is unbounded (absent,
            null, < 1 or above MAX_INSTANCES_LIMIT), min_instances is not 0, or the tier is unknown.
    """
    return ComputeConfig(
        clusters=MappingProxyType({role: _cluster(config, role) for role in ROLES}), source=config
    )


def load_compute(path: str | Path) -> ComputeConfig:
    """Load `configs/azure/compute.yaml` (see `parse_compute`)."""
    return parse_compute(load_config(path))
