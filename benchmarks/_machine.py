"""The machine a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform


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
