"""The machine a benchmark ran on, for its report, and how its timings are taken."""

from __future__ import annotations

import os
import platform
import statistics
import time


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """'x86_64, 2 cores (AMD EPYC)'."""
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu_name()})"


def median_seconds(fn, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sync(device: str) -> None:
    """Wait for a CUDA device's queued work (GPU timings); nothing elsewhere."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def write_report(path, lines: list[str]) -> None:
    """Write a benchmark's Markdown report (``lines`` joined by newlines) to
    ``path``, its folder made if needed, and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
