"""Measurements shared by the benchmark scripts: peak memory, real-token counts, timing.

Every benchmark counts the same things the same way, so the numbers of two sides compare:
tokens are the attention-mask ones (padding excluded), memory is the process's peak resident
set size, time is a monotonic wall clock.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024
    return peak * bytes_per_unit / (1024 * 1024)


def set_threads(threads: int) -> None:
    """Pin torch's intra- and inter-op thread pools so both sides of a comparison get the same CPU."""
    import torch

    torch.set_num_threads(threads)
    # Inter-op threads can only be set once per process, before any parallel work.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


@dataclass
class TokenCounter:
    """Counts the real and padded tokens of the batches a training loop consumed.

    Attributes:
        real: Tokens under the attention mask (what the model had to read).
        padded: Positions in the batch tensors, padding included (what the model computed over).
        batches: Number of batches counted.
    """

    real: int = 0
    padded: int = 0
    batches: int = 0

    def add(self, attention_mask: Any) -> None:
        """Count one batch from its `[B, T]` attention mask (a tensor)."""
        self.real += int(attention_mask.sum())
        self.padded += int(attention_mask.numel())
        self.batches += 1

    @property
    def padding_ratio(self) -> float:
        """Share of computed positions that were padding (0 when nothing was counted)."""
        return 0.0 if self.padded == 0 else 1.0 - self.real / self.padded


@dataclass
class Stopwatch:
    """Accumulates wall time over `start()`/`stop()` intervals (time.perf_counter).

    Attributes:
        seconds: Total measured time.
    """

    seconds: float = 0.0
    _started: float | None = field(default=None, repr=False)

    def start(self) -> None:
        """Begin an interval."""
        self._started = time.perf_counter()

    def stop(self) -> None:
        """End the current interval and add it to the total."""
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None


def median(values: list[float]) -> float:
    """Median of a non-empty list (the statistic every repeated measurement reports)."""
    return float(statistics.median(values))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = float(statistics.fmean(values))
    std = float(statistics.stdev(values)) if len(values) > 1 else 0.0
    return mean, std


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on: CPU, core count, load, library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import lightning
    import transformers

    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "transformers": transformers.__version__,
    }


#: CPU flags (as /proc/cpuinfo names them) that decide onnxruntime's int8 and fp32 kernels.
_ISA_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_int8": "AMX-INT8",
}


def cpu_isa() -> list[str]:
    """The instruction-set extensions of this CPU that matter for int8 inference (Linux; empty elsewhere)."""
    from ner_lightning.onnx.cpu_isa import _CPUINFO, parse_cpuinfo

    try:
        _, flags = parse_cpuinfo(_CPUINFO.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return []
    return [name for flag, name in _ISA_FLAGS.items() if flag in flags]
