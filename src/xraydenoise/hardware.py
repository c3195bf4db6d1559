"""What the machine offers: CPU instruction sets (for the precision) and compute devices.

bf16 autocast is about 3x faster than fp32 on CPUs with native bf16 instructions
(AVX512-BF16, AMX) but about 10x *slower* on CPUs without them (measured on an AVX2-only
Zen 3), so the choice is made at run time from what the CPU reports, never hard-coded.
Inference and training both ask here; neither imports the other.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
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


def resolve_device(device: str | None) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a concrete device (``cpu`` or ``cuda:N``).

    ``auto`` takes the first GPU when PyTorch sees one, else the CPU. Asking for a GPU that is
    not there is a ConfigError, never a silent fall-back to the CPU.
    """
    from .errors import ConfigError

    text = (device or "auto").strip().lower()
    if text == "cpu":
        return "cpu"
    if text not in ("auto", "cuda", "gpu") and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    count = gpu_count()
    if text == "auto":
        return "cuda:0" if count else "cpu"
    index = int(text[5:]) if text.startswith("cuda:") else 0
    if index >= count:
        seen = f"{count} GPU(s) visible" if count else "no GPU visible to PyTorch or ONNX Runtime"
        raise ConfigError(f"device {device} asked for, but {seen}")
    return f"cuda:{index}"


#: Device files a GPU driver makes (NVIDIA, and AMD's ROCm): without any, no library can see a GPU.
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia/version", "/dev/kfd")


def gpu_count() -> int:
    """CUDA devices PyTorch sees, else 1 when ONNX Runtime has its CUDA provider, else 0.

    On a machine without a GPU driver it answers 0 without importing torch, which alone costs
    about 300 MB of resident memory in a process that then runs ONNX Runtime.
    """
    import os

    if not any(os.path.exists(path) for path in _GPU_DEVICE_FILES):
        return 0
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        return 1 if "CUDAExecutionProvider" in ort.get_available_providers() else 0
    except ImportError:
        return 0


#: Set to ``system`` to leave the C allocator as the process found it (see reuse_freed_memory).
MALLOC_ENV = "XRAYDENOISE_MALLOC"
_MALLOC_TUNED = False


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of handing it back to the system.

    glibc serves every block over 32 MiB (a network's feature maps at 1024x1024) with its own
    mmap and unmaps it on free, so every image, and every tile, faults its activations into
    the process again, page by page: 40,000-280,000 page faults per 1024x1024 image, a quarter
    or more of the network's time on a CPU. With mmap off and trimming only above 1 GiB of free
    heap, the next image or tile of the same shape reuses the last one's pages (no faults); the
    PyTorch CPU backend, which applies this once per process, hands the heap back
    (:func:`release_freed_memory`) whenever the shape changes. Does nothing off glibc or with
    ``XRAYDENOISE_MALLOC=system``. Returns whether it took effect.
    """
    import os

    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return True
    if os.environ.get(MALLOC_ENV, "").strip().lower() == "system" or platform.libc_ver()[0] != "glibc":
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    try:
        libc = ctypes.CDLL(None)
        _MALLOC_TUNED = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**30))
    except (OSError, AttributeError):
        return False
    return _MALLOC_TUNED


def release_freed_memory() -> None:
    """Hand the memory that lies freed in the heap back to the system (``malloc_trim``).

    The counterpart of :func:`reuse_freed_memory`, for when what was freed will not be reused:
    blocks freed by a tile of one shape are the wrong sizes for the next shape, and without
    this the heap grew to 1.3 GiB on a 4096x4096 radiograph cut into tiles of four shapes.
    Does nothing where the allocator was left as it was.
    """
    if _MALLOC_TUNED:
        ctypes.CDLL(None).malloc_trim(0)


@lru_cache(maxsize=1)
def _thread_pools():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the loaded BLAS libraries once: a few ms


@contextmanager
def blas_on_one_thread() -> Iterator[None]:
    """Run numpy's BLAS calls inside on the calling thread only.

    OpenBLAS, after each call, keeps its worker threads spinning for a while in case another
    call follows. When a network runs next (PyTorch or ONNX Runtime, with a thread per core),
    those spinning threads take the cores from it: after the noise estimate's small matrix
    products, the shipped network at 1024x1024 ran about a fifth slower on a two-core machine
    than after a pause. The estimate's products are too small to gain from threads, so it runs
    them here; the setting is restored on leaving.
    """
    with _thread_pools().limit(limits=1, user_api="blas"):
        yield
