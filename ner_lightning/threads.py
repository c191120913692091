"""Intra-op threads of a training process: an explicit setting, bounded by the cores it may use.

On a shared machine, PyTorch's default (one thread per core it sees) can make every step several
times slower than one thread per core actually granted. The cores a process may use are the
fewest of: its CPU affinity (`sched_getaffinity`), the cgroup CPU quota (`cpu.max`, v2, or
`cpu.cfs_quota_us` / `cpu.cfs_period_us`, v1) and `OMP_NUM_THREADS` when set.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ner_lightning.errors import ConfigError

log = logging.getLogger(__name__)

#: cgroup files holding the CPU quota (v2, then v1).
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


@dataclass(frozen=True)
class Cores:
    """The cores a process may use and what limits them.

    Attributes:
        count: Usable cores (at least 1).
        limited_by: `affinity`, `cgroup` or `OMP_NUM_THREADS`.
    """

    count: int
    limited_by: str


def cgroup_cpu_limit(
    v2: Path = CGROUP_V2_CPU_MAX, v1_quota: Path = CGROUP_V1_QUOTA, v1_period: Path = CGROUP_V1_PERIOD
) -> int | None:
    """Cores the cgroup CPU quota allows (rounded up), or None without a quota."""
    try:
        if v2.is_file():
            quota, period = v2.read_text(encoding="utf-8").split()[:2]  # "max 100000" or "200000 100000"
            if quota != "max":
                return max(1, math.ceil(int(quota) / int(period)))
            return None
        if v1_quota.is_file() and v1_period.is_file():
            quota_us = int(v1_quota.read_text(encoding="utf-8").strip())
            period_us = int(v1_period.read_text(encoding="utf-8").strip())
            if quota_us > 0 and period_us > 0:
                return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        return None
    return None


def available_cores() -> Cores:
    """The cores this process may use (affinity, cgroup quota, `OMP_NUM_THREADS`)."""
    try:
        limits = [(len(os.sched_getaffinity(0)), "affinity")]
    except AttributeError:  # not on Linux
        limits = [(os.cpu_count() or 1, "affinity")]
    quota = cgroup_cpu_limit()
    if quota is not None:
        limits.append((quota, "cgroup"))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        limits.append((int(omp), "OMP_NUM_THREADS"))
    count, source = min(limits, key=lambda item: item[0])
    return Cores(max(1, count), source)


def resolve_threads(requested: int | None) -> tuple[int, Cores]:
    """The intra-op thread count to use: `requested`, at most the available cores (warned), default all of them.

    Args:
        requested: Threads asked for (`--threads`); None or 0: the available cores.

    Returns:
        `(threads, available)`.

    Raises:
        ConfigError: `requested` is negative.
    """
    cores = available_cores()
    if requested is not None and requested < 0:
        raise ConfigError(
            f"threads must be >= 0, got {requested}",
            field="threads",
            fix=f"use 0 for every available core ({cores.count} here) or a count up to {cores.count}",
        )
    if not requested:
        return cores.count, cores
    if requested > cores.count:
        log.warning(
            "--threads %d is more than the %d core(s) this process may use (limited by %s); using %d",
            requested,
            cores.count,
            cores.limited_by,
            cores.count,
        )
        return cores.count, cores
    return requested, cores
