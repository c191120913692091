"""The CPU's int8 instruction set: what a model is converted for and what it was validated on.

onnxruntime's int8 matrix kernels differ by instruction set. Without VNNI, x86 kernels multiply
uint8 activations by int8 weights with `vpmaddubsw`, whose int16 sums saturate; 7-bit weights
(`reduce_range`) avoid that. With AVX-512 VNNI (or AVX-VNNI, AMX) the products accumulate in
int32 and the full 8-bit range is exact. So the same recipe can score differently on two CPUs, and
a model folder records the ISA it was converted and validated on (`ner_model.json` ->
`quantization.validated_on`).

Detection reads the `flags` line of `/proc/cpuinfo` (Linux); elsewhere it falls back to numpy's
runtime CPU feature table.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ner_lightning.errors import ExportError

#: Target ISAs accepted by `ner-convert --target-isa`, slowest int8 path first.
TARGET_ISAS: tuple[str, ...] = ("avx2", "avx512", "avx512_vnni", "amx", "arm64")
#: Targets whose int8 products accumulate without int16 saturation.
VNNI_TARGETS: frozenset[str] = frozenset({"avx512_vnni", "amx", "arm64"})

_CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuIsa:
    """The int8-relevant instruction sets of one CPU.

    Attributes:
        model: CPU model name (`model name` of /proc/cpuinfo, else `platform.processor()`).
        machine: `platform.machine()` (x86_64, aarch64, ...).
        avx2: AVX2.
        avx512: AVX-512 foundation (`avx512f`).
        vnni: AVX-512 VNNI or AVX-VNNI (int8 dot products into int32).
        amx: AMX int8 tiles.
        source: Where the flags came from (`/proc/cpuinfo`, `numpy`, `unknown`).
    """

    model: str
    machine: str
    avx2: bool
    avx512: bool
    vnni: bool
    amx: bool
    source: str

    @property
    def level(self) -> str:
        """The best target of `TARGET_ISAS` this CPU runs (its `--target-isa` default)."""
        if self.machine.lower() in ("aarch64", "arm64"):
            return "arm64"
        if self.amx:
            return "amx"
        if self.vnni:
            return "avx512_vnni"
        if self.avx512:
            return "avx512"
        return "avx2"

    def to_json(self) -> dict[str, Any]:
        """The record written into `ner_model.json` and `smoke_report.json`."""
        return {**asdict(self), "level": self.level}


def parse_cpuinfo(text: str) -> tuple[str, set[str]]:
    """The model name and flag set of the first processor of a `/proc/cpuinfo` text."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def from_flags(model: str, machine: str, flags: set[str], source: str) -> CpuIsa:
    """A `CpuIsa` from Linux cpuinfo flag names."""
    return CpuIsa(
        model=model,
        machine=machine,
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        vnni=bool(flags & {"avx512_vnni", "avx512vnni", "avx_vnni"}),
        amx=bool(flags & {"amx_int8"}),
        source=source,
    )


def _numpy_flags() -> set[str]:
    """cpuinfo-style flag names from numpy's runtime CPU feature table (empty if unavailable)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return set()
    # numpy has no AMX entry (AVX512_SPR does not imply it: a VM may hide AMX), so AMX is never inferred.
    names = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512VNNI": "avx512_vnni"}
    return {flag for key, flag in names.items() if features.get(key)}


def detect_cpu(cpuinfo: Path = _CPUINFO) -> CpuIsa:
    """The instruction sets of this machine's CPU."""
    machine = platform.machine()
    try:
        model, flags = parse_cpuinfo(cpuinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        model, flags = "", set()
    if flags:
        return from_flags(model, machine, flags, str(cpuinfo))
    flags = _numpy_flags()
    return from_flags(model or platform.processor(), machine, flags, "numpy" if flags else "unknown")


def resolve_target(target: str | None, cpu: CpuIsa) -> str:
    """The target ISA of a conversion: `target`, or this CPU's level for None/`native`.

    Raises:
        ExportError: `target` is not one of `TARGET_ISAS`.
    """
    if target in (None, "", "native"):
        return cpu.level
    if target not in TARGET_ISAS:
        raise ExportError(
            f"unknown target ISA {target!r}",
            field="--target-isa",
            fix=f"use native or one of {', '.join(TARGET_ISAS)}",
        )
    return target


def mismatch_warning(target: str, cpu: CpuIsa) -> str | None:
    """A warning when the gate runs on a CPU whose int8 kernels differ from the target's (else None).

    The gate's figures are measured with this CPU's kernels; a VNNI target validated without VNNI
    (or the reverse) may score differently where it is deployed.
    """
    if target == cpu.level:
        return None
    if (target in VNNI_TARGETS) != (cpu.level in VNNI_TARGETS) or target == "arm64" or cpu.level == "arm64":
        return (
            f"converting for {target} on a {cpu.level} CPU ({cpu.model or 'unknown model'}): int8 kernels "
            f"differ between the two, so the gate's figures may differ on the target; "
            f"validate again on a {target} machine"
        )
    return None
