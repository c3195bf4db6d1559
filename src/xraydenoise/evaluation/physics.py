"""What a denoiser does to resolution and noise texture: MTF from a slanted edge, NPS of the residual.

A PSNR says how far an output is from the clean image, not *how* it differs. An imaging
physicist asks two things of a denoiser: does it blur (the modulation transfer function, MTF,
read from a slanted edge as IEC 62220-1 does for detectors), and what texture does the noise
it leaves have (the noise power spectrum, NPS, of the residual noise: a filter that keeps
only low frequencies leaves blotchy noise that looks unlike any detector's).

* :func:`slanted_edge_phantom` - a sharp edge tilted by a few degrees, blurred by a detector MTF;
* :func:`edge_mtf` - the MTF from such an edge: pixels binned by their distance to the edge at
  a quarter-pixel pitch (the tilt samples every sub-pixel phase), the edge spread function
  differentiated into the line spread function and Fourier transformed;
* :func:`radial_nps` - the radially averaged NPS of noise fields, from detrended square ROIs.

Frequencies are in cycles per pixel (0 to 0.5, the Nyquist frequency).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["edge_mtf", "radial_nps", "slanted_edge_phantom"]

#: Sub-pixel bins per pixel of the edge spread function (IEC 62220-1 uses 4x oversampling).
OVERSAMPLING = 4


def slanted_edge_phantom(size: int = 256, *, angle_deg: float = 5.0, low: float = 0.3, high: float = 0.7,
                         blur_px: float = 0.7, supersample: int = 8) -> np.ndarray:
    """A ``size`` x ``size`` image of a straight edge through the centre, ``angle_deg`` from vertical.

    Left of the edge ``low``, right of it ``high``; the edge is rendered at ``supersample`` x
    the resolution (area sampling), then blurred by a Gaussian of ``blur_px`` (the detector's
    own MTF, so the phantom's MTF is ``exp(-2 pi^2 blur^2 f^2)`` times the pixel aperture).

    >>> edge = slanted_edge_phantom(64)
    >>> edge.shape, round(float(edge[32, 0]), 3), round(float(edge[32, -1]), 3)
    ((64, 64), 0.3, 0.7)
    """
    from scipy import ndimage

    n = size * supersample
    coords = (np.arange(n) + 0.5) / supersample - size / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    theta = math.radians(angle_deg)
    signed = xx * math.cos(theta) - yy * math.sin(theta)
    fine = np.where(signed > 0, high, low)
    image = fine.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    if blur_px > 0:
        image = ndimage.gaussian_filter(image, blur_px, mode="nearest")
    return image.astype(np.float32)


def _edge_geometry(image: np.ndarray) -> tuple[float, float]:
    """Angle (rad from vertical) and offset of the edge, from the 50 % crossing of each row."""
    rows, cols = image.shape
    centres = []
    for r in range(rows):
        row = image[r].astype(np.float64)
        lo, hi = np.median(row[: cols // 8]), np.median(row[-cols // 8 :])
        mid = 0.5 * (lo + hi)
        grad = np.abs(np.diff(row))
        k = int(np.argmax(grad))
        # centroid of the gradient around its peak: robust to noise at the 50 % level
        window = slice(max(0, k - 6), min(cols - 1, k + 7))
        weights = grad[window]
        if weights.sum() <= 0 or not math.isfinite(mid):
            continue
        centres.append((r, float(np.sum(weights * (np.arange(window.start, window.stop) + 0.5)) / weights.sum())))
    r, c = np.array(centres).T
    slope, intercept = np.polyfit(r, c, 1)
    return math.atan(slope), float(intercept)


def edge_mtf(image: np.ndarray, *, max_frequency: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies, mtf)`` of a slanted-edge image, MTF normalised to 1 at zero frequency.

    The edge's position in each row is fitted by a line; every pixel is then binned by its
    horizontal distance to that line at 1/:data:`OVERSAMPLING` px, which gives the oversampled
    edge spread function. Its derivative (the line spread function), windowed by a Hann window
    to tame the noise in the tails, is Fourier transformed; the division by the sinc of the
    finite-difference step undoes the derivative's own low-pass.

    >>> freq, mtf = edge_mtf(slanted_edge_phantom(128, blur_px=1.0))
    >>> round(float(np.interp(0.2, freq, mtf)), 2)  # exp(-2 pi^2 0.2^2) sinc(0.2) = 0.425
    0.42
    """
    image = np.asarray(image, dtype=np.float64)
    angle, intercept = _edge_geometry(image)
    rows, cols = image.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    distance = (xx + 0.5 - (intercept + np.tan(angle) * yy)) * math.cos(angle)
    half = cols // 2 - 4
    keep = np.abs(distance) < half
    bins = np.floor(distance[keep] * OVERSAMPLING).astype(int) + half * OVERSAMPLING
    total = np.bincount(bins, weights=image[keep], minlength=2 * half * OVERSAMPLING)
    count = np.bincount(bins, minlength=2 * half * OVERSAMPLING)
    filled = count > 0
    esf = np.interp(np.arange(len(total)), np.flatnonzero(filled), total[filled] / count[filled])
    lsf = np.gradient(esf)
    lsf *= np.hanning(len(lsf))
    spectrum = np.abs(np.fft.rfft(lsf))
    freq = np.fft.rfftfreq(len(lsf), d=1.0 / OVERSAMPLING)
    # np.gradient is a central difference over two bins: its response is sinc(2 f / OVERSAMPLING)
    spectrum /= np.maximum(np.abs(np.sinc(2 * freq / OVERSAMPLING)), 1e-6)
    mtf = spectrum / spectrum[0]
    keep_f = freq <= max_frequency + 1e-9
    return freq[keep_f], mtf[keep_f]


def radial_nps(fields: list[np.ndarray] | np.ndarray, *, roi: int = 64, bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies, nps)``: radially averaged noise power spectrum of zero-mean noise fields.

    Each field is cut into non-overlapping ``roi`` x ``roi`` squares, a plane is fitted and
    removed from each (IEC 62220-1 detrending), and ``|FFT|^2 / roi^2`` is averaged over the
    squares, then over annuli of radial frequency. The scaling makes the NPS of white noise of
    variance ``v`` equal ``v`` at every frequency (the NPS integrates to the variance over the
    unit frequency square).

    >>> rng = np.random.default_rng(0)
    >>> f, nps = radial_nps([rng.normal(0, 0.1, (256, 256))])
    >>> round(float(nps[2:].mean()), 3)
    0.01
    """
    fields = [np.asarray(f, dtype=np.float64) for f in (fields if isinstance(fields, list) else [fields])]
    yy, xx = np.mgrid[0:roi, 0:roi]
    basis = np.stack([np.ones(roi * roi), yy.ravel(), xx.ravel()], axis=1)
    pinv = np.linalg.pinv(basis)
    power = np.zeros((roi, roi))
    count = 0
    for field in fields:
        for top in range(0, field.shape[0] - roi + 1, roi):
            for left in range(0, field.shape[1] - roi + 1, roi):
                square = field[top : top + roi, left : left + roi].ravel()
                residual = square - basis @ (pinv @ square)
                power += np.abs(np.fft.fft2(residual.reshape(roi, roi))) ** 2 / (roi * roi)
                count += 1
    if not count:
        raise ValueError(f"no {roi} x {roi} region fits in the noise fields")
    power /= count
    fy = np.fft.fftfreq(roi)[:, None]
    fx = np.fft.fftfreq(roi)[None, :]
    radius = np.hypot(fy, fx)
    edges = np.linspace(0, 0.5, bins + 1)
    which = np.digitize(radius.ravel(), edges) - 1
    valid = (which >= 0) & (which < bins)
    sums = np.bincount(which[valid], weights=power.ravel()[valid], minlength=bins)
    counts = np.bincount(which[valid], minlength=bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    ok = counts > 0
    return centres[ok], sums[ok] / counts[ok]


def mtf_and_nps(denoise, noise, *, size: int = 256, realizations: int = 8, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MTF and residual NPS of one denoiser for one noise model, on synthetic phantoms.

    ``denoise(noisy, noise) -> image`` is any method told what the evaluation tells it (see
    :func:`xraydenoise.denoisers.denoise_with_noise`). The MTF is that of the edge denoised in
    each of ``realizations`` noise draws and averaged (the mean response: a denoiser's blur
    depends on the noise it sees); the NPS is that of ``output - 0.5`` on a flat field at 0.5.

    Returns ``{"mtf": (f, mtf), "nps": (f, nps), "input_mtf": ..., "input_nps": ...}``, the
    ``input_`` entries measured on the noisy images themselves.
    """
    edge = slanted_edge_phantom(size)
    flat = np.full((size, size), 0.5, dtype=np.float32)
    outputs, noisy_edges, residuals, input_noise = [], [], [], []
    for r in range(realizations):
        noisy = noise(edge, seed=seed + 2 * r).astype(np.float32)
        noisy_edges.append(noisy)
        outputs.append(np.asarray(denoise(noisy, noise), dtype=np.float64))
        z = noise(flat, seed=seed + 2 * r + 1).astype(np.float32)
        input_noise.append(z - 0.5)
        residuals.append(np.asarray(denoise(z, noise), dtype=np.float64) - 0.5)
    return {
        "mtf": edge_mtf(np.mean(outputs, axis=0)),
        "input_mtf": edge_mtf(np.mean(noisy_edges, axis=0)),
        "nps": radial_nps(residuals),
        "input_nps": radial_nps(input_noise),
    }
