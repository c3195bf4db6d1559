"""Figures of the report: examples with zoom and difference maps, augmentation, learning curves, PSNR vs sigma."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from ..io._atomic import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG through the atomic writer (never half a figure), and close it."""
    try:
        return atomic_write(Path(path), lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        _plt().close(fig)


def detail_window(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most fine detail (gradient energy)."""
    gy, gx = cast("list[np.ndarray]", np.gradient(image.astype(np.float64)))  # one array per axis of a 2-D image
    energy = gx**2 + gy**2
    best, corner = -1.0, (0, 0)
    step = max(8, size // 4)
    h, w = image.shape
    for top in range(size // 2, max(size // 2 + 1, h - size - size // 2), step):
        for left in range(size // 2, max(size // 2 + 1, w - size - size // 2), step):
            e = energy[top : top + size, left : left + size].mean()
            if e > best:
                best, corner = e, (top, left)
    return corner


#: Panels per row of the example figure: with the 9 panels of the report (noisy, 7 methods,
#: clean) two rows of 5 keep each panel near 300 px wide at the figure's dpi, instead of
#: 140 px in one row, so the texture a method leaves or removes can be seen.
EXAMPLE_COLUMNS = 5
#: Side of one panel in inches (at dpi 110: about 300 px).
EXAMPLE_PANEL_INCHES = 2.8
#: Top of the error colour scale, on the [0, 1] intensity scale.
ERROR_MAX = 0.15


def example_figure(clean: np.ndarray, noisy: np.ndarray, outputs: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Noisy / each method / clean, a zoomed inset of fine detail below, and |output - clean| maps.

    The panels are laid out :data:`EXAMPLE_COLUMNS` to a row; each row of panels has three
    lines (the image with the zoom window marked, the zoom, the error map), and each error
    line has its colour bar, so the error maps can be read in grey levels.
    """
    from matplotlib.patches import Rectangle

    plt = _plt()
    from ..metrics import psnr, ssim

    panels = [("noisy", noisy)] + list(outputs.items()) + [("clean", clean)]
    zoom = max(32, min(clean.shape) // 5)
    top, left = detail_window(clean, zoom)
    cols = min(EXAMPLE_COLUMNS, len(panels))
    groups = (len(panels) + cols - 1) // cols
    aspect = clean.shape[0] / clean.shape[1]
    # Row heights: full image (its own aspect), zoom (square), error map (the image's aspect).
    ratios = [aspect, 1.0, aspect] * groups
    side = EXAMPLE_PANEL_INCHES
    fig, axes = plt.subplots(
        3 * groups, cols + 1, squeeze=False,
        figsize=(side * cols + 0.5, side * sum(ratios) + 0.45 * 3 * groups + 0.6),
        gridspec_kw={"height_ratios": ratios, "width_ratios": [1.0] * cols + [0.05]},
    )
    error_image = None
    for index, (name, img) in enumerate(panels):
        group, col = divmod(index, cols)
        row = 3 * group
        shown = np.clip(img, 0, 1)
        label = name if name == "clean" else f"{name}\n{psnr(clean, shown):.2f} dB / {ssim(clean, shown):.3f}"
        axes[row, col].imshow(img, cmap="gray", vmin=0, vmax=1)
        axes[row, col].add_patch(Rectangle((left, top), zoom, zoom, fill=False, edgecolor="yellow", linewidth=1))
        axes[row, col].set_title(label, fontsize=10)
        axes[row + 1, col].imshow(img[top : top + zoom, left : left + zoom], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if name != "clean":  # the clean image's own error map is all zero: nothing to see
            error_image = axes[row + 2, col].imshow(np.abs(img - clean), cmap="magma", vmin=0, vmax=ERROR_MAX)
    for row in range(3 * groups):
        for col in range(cols):
            axes[row, col].axis("off")
        axes[row, cols].axis("off")
    for group in range(groups):
        row = 3 * group
        axes[row + 1, 0].set_title("zoom", fontsize=9, loc="left")
        axes[row + 2, 0].set_title("|output - clean|", fontsize=9, loc="left")
        if error_image is not None:
            bar_axis = axes[row + 2, cols]
            bar_axis.axis("on")
            bar = fig.colorbar(error_image, cax=bar_axis)
            ticks = np.linspace(0, ERROR_MAX, 4)
            bar.set_ticks(ticks)
            # Both scales: the [0, 1] intensity the metrics use, and 8-bit grey levels.
            bar.set_ticklabels([f"{t:.2f} ({t * 255:.0f}/255)" for t in ticks], fontsize=8)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def augmentation_figure(patch: np.ndarray, path: Path) -> Path:
    """The paper's augmentations applied one at a time to a real radiograph crop, then all at
    random; below, the same crop with text, markers or metal painted on (``data.overlay_probability``)."""
    import kornia.geometry.transform as KT
    import torch

    from ..data.augmentation import Augment

    plt = _plt()
    x = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))[None, None]
    size = x.shape[-1]

    def zoom(t, factor):
        scale = torch.tensor([[factor, factor]])
        return KT.scale(t, scale, padding_mode="reflection")

    panels = [
        ("original", x),
        ("rotate -15°", KT.rotate(x, torch.tensor([-15.0]), padding_mode="reflection")),
        ("rotate +15°", KT.rotate(x, torch.tensor([15.0]), padding_mode="reflection")),
        ("horizontal flip", torch.flip(x, dims=[-1])),
        ("vertical flip", torch.flip(x, dims=[-2])),
        ("zoom 0.8", zoom(x, 0.8)),
        ("zoom 1.2", zoom(x, 1.2)),
    ]
    torch.manual_seed(0)
    augment = Augment(int(size * 2 / 3))
    for i in range(3):
        panels.append((f"random draw {i + 1}\n(training patch)", augment(x)))
    from ..data.overlays import paint_overlays

    for i in range(5):
        painted = paint_overlays(patch.astype(np.float32), np.random.default_rng(i))
        panels.append((f"painted on {i + 1}", torch.from_numpy(painted)[None, None]))
    fig, axes = plt.subplots(3, 5, figsize=(11, 7.2))
    for ax, (name, img) in zip(axes.ravel(), panels):
        ax.imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.suptitle("augmentation: rotation within ±15°, horizontal/vertical flips, zoom 0.8-1.2 (kornia); "
                 "bottom row: burned-in text, markers and metal painted on\n(rotation and zoom on a share "
                 "of the patches, data.affine_probability; painting on a share, data.overlay_probability)", fontsize=9)
    return save_figure(fig, path)


def learning_curves_figure(histories: dict[str, list[dict]], path: Path) -> Path:
    plt = _plt()
    names = [n for n, rows in histories.items() if rows]
    cols = min(4, max(1, len(names)))
    rows_n = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 2.9 * rows_n), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        rows = histories[name]
        steps = [int(r["step"]) for r in rows]
        ax.plot(steps, [float(r["train_loss"]) for r in rows], label="training")
        ax.plot(steps, [float(r["val_loss"]) for r in rows], label="validation")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle("learning curves: loss = w·MSE + (1-w)·(1-SSIM) per epoch", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def psnr_vs_sigma_figure(summary: list[dict], sigmas: dict[str, float], path: Path) -> Path:
    """Mean PSNR and SSIM against Gaussian sigma, one line per method."""
    plt = _plt()
    fig, (ax_p, ax_s) = plt.subplots(1, 2, figsize=(10, 3.8))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    for method in methods:
        pts = sorted((sigmas[r["level"]], r["psnr_mean"], r["ssim_mean"]) for r in summary if r["method"] == method and r["level"] in sigmas)
        if not pts:
            continue
        xs, ps, ss = zip(*pts)
        style = "-o" if method != "noisy" else ":"
        ax_p.plot(xs, ps, style, label=method, markersize=3)
        ax_s.plot(xs, ss, style, label=method, markersize=3)
    ax_p.set_xlabel("Gaussian sigma (x/255)")
    ax_p.set_ylabel("mean PSNR (dB)")
    ax_s.set_xlabel("Gaussian sigma (x/255)")
    ax_s.set_ylabel("mean SSIM")
    ax_s.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


def _without_zero_frequency(curve: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """An NPS curve without its first annulus: that one holds only the zero frequency, which the
    detrending of :func:`~xraydenoise.evaluation.physics.radial_nps` removes (about 1e-30 on a log axis)."""
    freq, nps = curve
    return freq[1:], nps[1:]


def physics_figure(curves: dict[str, dict[str, dict]], path: Path) -> Path:
    """One row per noise model: the MTF (slanted edge) and the residual NPS (flat field) of each method.

    ``curves[noise_label][method_label]`` is what :func:`xraydenoise.evaluation.physics.mtf_and_nps`
    returns; the ``input_`` curves of the first method are drawn as "noisy input".
    """
    plt = _plt()
    fig, axes = plt.subplots(len(curves), 2, figsize=(10, 3.6 * len(curves)), squeeze=False)
    for row, (noise_label, by_method) in enumerate(curves.items()):
        ax_mtf, ax_nps = axes[row]
        first = next(iter(by_method.values()))
        ax_mtf.plot(*first["input_mtf"], color="0.5", linestyle="--", label="noisy input (phantom)")
        ax_nps.semilogy(*_without_zero_frequency(first["input_nps"]), color="0.5", linestyle="--", label="noise added")
        for method, result in by_method.items():
            ax_mtf.plot(*result["mtf"], label=method)
            ax_nps.semilogy(*_without_zero_frequency(result["nps"]), label=f"{method} residual")
        ax_mtf.set(xlim=(0, 0.5), ylim=(0, 1.1), xlabel="spatial frequency (cycles/pixel)", ylabel="MTF",
                   title=f"{noise_label}: MTF from a slanted edge")
        ax_nps.set(xlim=(0, 0.5), xlabel="spatial frequency (cycles/pixel)", ylabel="NPS (intensity² · pixel²)",
                   title=f"{noise_label}: NPS on a flat field")
        ax_mtf.grid(alpha=0.3)
        ax_nps.grid(alpha=0.3, which="both")
        ax_mtf.legend(fontsize=8)
        ax_nps.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
