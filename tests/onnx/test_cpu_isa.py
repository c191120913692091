"""CPU instruction-set detection: /proc/cpuinfo flags, numpy's feature table, target resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from ner_lightning.errors import ExportError
from ner_lightning.onnx.cpu_isa import (
    _numpy_flags,
    detect_cpu,
    from_flags,
    mismatch_warning,
    parse_cpuinfo,
    resolve_target,
)

_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Test CPU
flags\t\t: fpu sse sse2 {flags}

processor\t: 1
model name\t: Intel(R) Xeon(R) Test CPU
flags\t\t: fpu
"""


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ("sse4_2 avx avx2 fma", "avx2"),
        ("avx2 avx512f avx512bw", "avx512"),
        ("avx2 avx512f avx512_vnni", "avx512_vnni"),
        ("avx2 avx_vnni", "avx512_vnni"),
        ("avx2 avx512f avx512_vnni amx_tile amx_int8", "amx"),
    ],
)
def test_levels_from_cpuinfo_files(tmp_path: Path, flags: str, level: str) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(_CPUINFO.format(flags=flags))
    cpu = detect_cpu(path)
    assert cpu.level == level and cpu.model == "Intel(R) Xeon(R) Test CPU" and cpu.source == str(path)
    assert cpu.to_json()["level"] == level


def test_this_machine_agrees_with_numpy() -> None:
    cpu = detect_cpu()
    numpy_flags = _numpy_flags()
    if cpu.source != "/proc/cpuinfo" or not numpy_flags:
        pytest.skip("needs both /proc/cpuinfo and numpy's CPU feature table")
    from_numpy = from_flags(cpu.model, cpu.machine, numpy_flags, "numpy")
    assert (cpu.avx2, cpu.avx512, cpu.vnni) == (from_numpy.avx2, from_numpy.avx512, from_numpy.vnni)


def test_unreadable_cpuinfo_falls_back_to_numpy(tmp_path: Path) -> None:
    cpu = detect_cpu(tmp_path / "missing")
    assert cpu.source in ("numpy", "unknown")
    assert cpu.avx2 == ("avx2" in _numpy_flags())


def test_targets_and_mismatch_warnings() -> None:
    avx2 = from_flags("old", "x86_64", parse_cpuinfo(_CPUINFO.format(flags="avx2"))[1], "test")
    vnni = from_flags("new", "x86_64", {"avx2", "avx512f", "avx512_vnni"}, "test")
    assert resolve_target(None, vnni) == resolve_target("native", vnni) == "avx512_vnni"
    assert resolve_target("avx2", vnni) == "avx2"
    with pytest.raises(ExportError, match="unknown target ISA 'sse9'"):
        resolve_target("sse9", vnni)
    assert mismatch_warning("avx512_vnni", vnni) is None
    warning = mismatch_warning("avx512_vnni", avx2)
    assert warning and "may differ" in warning and "avx2 CPU" in warning
    assert mismatch_warning("avx512", avx2) is None, "neither has VNNI: same int8 kernel behaviour"
