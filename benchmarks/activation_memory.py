"""Peak activation memory per input pixel of the shipped network, per backend and precision.

    python benchmarks/activation_memory.py            # all backends at 1024 and 1536 px
    python benchmarks/activation_memory.py --child onnxruntime fp32 1024   # one measurement

The automatic tile size (``xraydenoise.inference.choose_tiles``) turns a memory budget into
pixels with a bytes-per-pixel figure per backend: ``BYTES_PER_PIXEL`` for ONNX Runtime and
``TorchBackend.FP32_BYTES_PER_PIXEL`` / ``BF16_BYTES_PER_PIXEL`` for PyTorch. This prints
what one forward pass over a whole square image actually takes: the rise of the peak
resident memory (VmHWM) above the resident memory just before the pass, over the pixels.
Each measurement runs in a fresh process with glibc's default allocator
(``XRAYDENOISE_MALLOC=system``), so that memory an earlier pass freed cannot hide the cost.
The figures in the code are upper bounds of these (Linux only: VmHWM).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from peak_memory import MIB, current_rss_mib, peak_rss_mib  # benchmarks/ is sys.path[0] when run as a script

CASES = [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32")]


def measure(backend: str, precision: str, size: int) -> float:
    """Bytes per pixel of one pass over a ``size`` x ``size`` noisy radiograph, in this process."""
    import gc

    import numpy as np

    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.io import load_image
    from xraydenoise.noise import parse_noise
    from xraydenoise.settings import PACKAGE_DIR

    sample = load_image(PACKAGE_DIR / "samples" / "nih_00001629_002.png").to_float()
    repeats = -(-size // min(sample.shape))
    clean = np.ascontiguousarray(np.tile(sample, (repeats, repeats))[:size, :size])
    noisy = parse_noise("25").sample(clean, seed=0)
    network = NetworkDenoiser(backend=backend, fast=precision == "bf16", tile=size)
    condition = network.condition_for(noisy, None)
    told = condition(noisy) if callable(condition) else condition
    gc.collect()
    before = current_rss_mib()
    network.backend.run(noisy, told)
    return (peak_rss_mib() - before) * MIB / noisy.size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "PRECISION", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 1536])
    args = parser.parse_args(argv)
    if args.child:
        backend, precision, size = args.child
        print(f"{measure(backend, precision, int(size)):.0f}")
        return
    from xraydenoise.hardware import machine_description

    print(f"{machine_description()}; peak activation bytes per input pixel, one pass over a whole image")
    env = {**os.environ, "XRAYDENOISE_MALLOC": "system"}
    for backend, precision in CASES:
        figures = []
        for size in args.sizes:
            done = subprocess.run([sys.executable, __file__, "--child", backend, precision, str(size)], env=env,
                                  capture_output=True, text=True, check=False)
            figures.append(f"{size}²: {done.stdout.strip() if done.returncode == 0 else 'failed: ' + done.stderr.strip()[-200:]}")
        print(f"  {backend:12s} {precision}  " + "   ".join(figures))


if __name__ == "__main__":
    main()
