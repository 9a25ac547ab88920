"""What machine a benchmark ran on, printed beside every figure.

LiteRT int8 runs about 4.5x faster on a CPU with AVX-512 VNNI than on plain
AVX2, so a speed figure means little without the CPU model and its SIMD flags.
The benchmarks are scripts; each imports this file from its own folder.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile")


def cpu_description() -> str:
    """The CPU model and its SIMD flags (from /proc/cpuinfo on Linux), the cores visible and the load average."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    simd = " ".join(flag for flag in SIMD_FLAGS if flag in flags) or "no SIMD flags listed"
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"CPU: {model} [{simd}]; {os.cpu_count()} cores visible{load}"
