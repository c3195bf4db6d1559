"""``xraydenoise demo``: the bundled radiographs, noisy, denoised and clean, with their scores."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..denoisers import get_denoiser
from ..io import load_image, save_image
from ..io._atomic import atomic_write_text
from ..metrics import psnr, ssim
from ..noise import GaussianNoise
from ..settings import PACKAGE_DIR
from .figures import save_figure

SAMPLES_DIR = PACKAGE_DIR / "samples"
#: Fast classical filters shown beside the network (BM3D is optional and slow: see the report).
DEMO_BASELINES = ("gaussian", "wavelet")


def sample_paths() -> list[Path]:
    return sorted(p for p in SAMPLES_DIR.glob("*.png"))


def run_demo(out_dir: Path, *, method: str = "network", sigma: float = 25 / 255, console=None, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rich.progress import track
    from rich.table import Table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    noise = GaussianNoise(sigma)
    methods = [method] + [m for m in DEMO_BASELINES if m != method]
    rows: list[dict[str, Any]] = []
    panels = []
    for i, path in enumerate(track(sample_paths(), description="denoising samples")):
        image = load_image(path)
        clean = image.to_float()
        # Unclipped, as in the report: clipping at 0 would add a bias in the dark background
        # of extremity films that no denoiser of zero-mean noise is meant to remove. The saved
        # PNG is clipped, as any integer image must be.
        noisy = noise(clean, seed=seed + i).astype(np.float32)
        save_image(out_dir / f"{path.stem}_noisy.png", image.with_float(np.clip(noisy, 0, 1)), overwrite=True)
        outputs = {}
        for name in methods:
            start = time.perf_counter()
            result = np.clip(get_denoiser(name)(noisy, None if name == method else sigma), 0, 1)
            seconds = time.perf_counter() - start
            outputs[name] = result
            rows.append({"image": path.name, "method": name, "psnr": psnr(clean, result), "ssim": ssim(clean, result), "seconds": seconds})
        save_image(out_dir / f"{path.stem}_denoised.png", image.with_float(outputs[method]), method=method, overwrite=True)
        shown = np.clip(noisy, 0, 1)
        rows.append({"image": path.name, "method": "noisy", "psnr": psnr(clean, shown), "ssim": ssim(clean, shown), "seconds": 0.0})
        panels.append((path.stem, shown, outputs[method], clean))

    fig, axes = plt.subplots(len(panels), 3, figsize=(9, 3 * len(panels)))
    for row_axes, (name, noisy, denoised, clean) in zip(np.atleast_2d(axes), panels):
        for ax, img, label in zip(row_axes, (noisy, denoised, clean), (f"noisy (sigma {sigma * 255:.0f}/255)", f"denoised ({method})", "clean")):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{label}\n{name}" if label == "clean" else label, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    figure = save_figure(fig, out_dir / "before_after.png", dpi=90)
    table_text = io.StringIO()
    writer = csv.DictWriter(table_text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "metrics.csv", table_text.getvalue())
    if console is not None:
        table = Table(title=f"bundled samples, Gaussian noise sigma {sigma * 255:.0f}/255 (classical filters get the true sigma; the network is blind)")
        for column in ("image", "method", "PSNR dB", "SSIM", "seconds"):
            table.add_column(column, justify="left" if column in ("image", "method") else "right")
        for row in rows:
            table.add_row(row["image"], row["method"], f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", f"{row['seconds']:.2f}")
        console.print(table)
        console.print(f"figure: {figure}\ntable: {out_dir / 'metrics.csv'}")
    return figure
