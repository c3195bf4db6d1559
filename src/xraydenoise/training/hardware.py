"""Pick the fastest numeric precision that the machine actually supports.

bf16 autocast is about 3x faster than fp32 on CPUs with native bf16 instructions
(AVX512-BF16, AMX) but about 10x *slower* on CPUs without them (measured on an AVX2-only
Zen 3), so the choice is made at run time from what the CPU reports, never hard-coded.
"""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def machine_description() -> str:
    import os

    flags = cpu_flags()
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "baseline x86")
    bf16 = ", BF16" if cpu_has_bf16() else ""
    return f"{cpu_name()} ({os.cpu_count()} cores, {isa}{bf16})"


def lightning_precision(requested: str, accelerator: str) -> str:
    """Map a config's ``precision`` (auto | bf16 | fp32) to a Lightning precision string."""
    if requested == "fp32":
        return "32-true"
    if requested == "bf16":
        return "bf16-mixed"
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"
