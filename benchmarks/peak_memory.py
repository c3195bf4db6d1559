"""Peak resident memory of denoising one large 16-bit radiograph with the network.

Run by ``run_benchmarks.py`` in a fresh subprocess, so that nothing the benchmark itself
allocated (other images, other models, ONNX Runtime) counts: a process's peak memory only
means something in a process that does one thing.

    python benchmarks/peak_memory.py IMAGE.png --weights W.safetensors --out OUT.png

The image goes through exactly the code of ``xraydenoise denoise IMAGE -o DIR --method W``
(``batch.process_one``: read, ``NetworkDenoiser`` with the default tile selection, write a
16-bit PNG). Prints one JSON line: the resident memory after the imports (the baseline any
run pays), after loading the model, and the peak (VmHWM, see ``peak_rss_mib``), in MiB
(2**20 bytes).

``synthesize_image`` makes the test image; the parent calls it, so that the resizing does
not count in the child's peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

MIB = 2**20


def _proc_status_mib(field: str) -> float | None:
    """A VmRSS/VmHWM line of /proc/self/status in MiB; None where there is no /proc (not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MIB
    except OSError:
        pass
    return None


def ru_maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak * 1024 / MIB  # bytes on macOS, KiB on Linux


def current_rss_mib() -> float:
    """Resident memory right now (elsewhere than Linux, the peak so far is the best there is)."""
    return _proc_status_mib("VmRSS") or ru_maxrss_mib()


def peak_rss_mib() -> float:
    """Peak resident memory of this process.

    Linux's ``ru_maxrss`` is no good in a child: it starts at the RSS of the parent that
    spawned it (the high-water mark of the address space replaced by exec is kept), so a
    child of a 600 MiB benchmark reports at least 600 MiB. ``VmHWM`` belongs to the address
    space of this program alone. Other systems only have ``ru_maxrss``.
    """
    return _proc_status_mib("VmHWM") or ru_maxrss_mib()


def synthesize_image(source: Path, target: Path, size: int, *, sigma: float, seed: int = 0) -> Path:
    """Write a ``size`` x ``size`` 16-bit PNG: ``source`` resized (bicubic) plus Gaussian noise.

    Resizing an 8-bit radiograph with a smooth interpolator yields genuinely 16-bit values;
    the noise makes it the kind of input the denoiser is for (its cost does not depend on it).
    """
    import numpy as np
    from skimage.transform import resize

    from xraydenoise.io import Image, load_image, save_image
    from xraydenoise.noise import GaussianNoise

    clean = load_image(source).to_float()
    big = resize(clean, (size, size), order=3, anti_aliasing=size < min(clean.shape), preserve_range=True)
    noisy = np.clip(GaussianNoise(sigma)(big.astype(np.float32), seed=seed), 0.0, 1.0)
    pixels = np.rint(noisy * 65535.0).astype(np.uint16)
    return save_image(target, Image(pixels, "png", 65535.0), method=f"benchmark input {size}x{size}")


def measure(image: Path, weights: Path, out: Path) -> dict:
    """Denoise ``image`` as the CLI does (default backend); return the resident memory at each stage."""
    import sys

    from PIL import Image as PILImage

    from xraydenoise.batch import Job, process_one
    from xraydenoise.denoisers import fastest_backend, get_denoiser

    after_imports = current_rss_mib()
    # The CLI's default: the backend auto picks (cached per machine, so a run that follows the
    # benchmark's speed section does not probe again). process_one finds this denoiser in the
    # cache, so loading it first only splits the model's share from the image's.
    method, options = str(weights), {}
    backend = fastest_backend(weights)
    denoiser = get_denoiser(method, **options)
    after_model = current_rss_mib()

    with PILImage.open(image) as header:  # reads the header only, not the pixels
        width, height = header.size
    tile = denoiser.auto_tile(height, width)  # what the default selection picks right now
    start = time.perf_counter()
    out.unlink(missing_ok=True)
    note = process_one(Job(image, out), method, None, options)  # raises on failure; a note on DICOM syntax only
    seconds = time.perf_counter() - start
    torch = sys.modules.get("torch")
    return {
        "image": f"{width}x{height} uint16 PNG",
        "status": "done" if out.is_file() else "no output",
        "note": note,
        "backend": f"{backend[0]}{' bf16' if backend[1] else ''}",
        "tile": tile,
        "torch_loaded": torch is not None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "rss_after_imports_mib": round(after_imports, 1),
        "rss_after_model_mib": round(after_model, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "ru_maxrss_mib": round(ru_maxrss_mib(), 1),  # for comparison; includes the parent's RSS on Linux
        "seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path, help="16-bit PNG to denoise")
    parser.add_argument("--weights", type=Path, required=True, help=".safetensors weights (model card beside them)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the denoised PNG")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.image, args.weights, args.out)))


if __name__ == "__main__":
    main()
