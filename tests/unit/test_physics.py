"""Tests for xraydenoise.evaluation.physics: the MTF and NPS the report's imaging-physics table reads."""

from __future__ import annotations

import numpy as np
import pytest

from xraydenoise.evaluation.physics import edge_mtf, radial_nps, slanted_edge_phantom
from xraydenoise.noise import GaussianKernel, parse_noise

ROI = 64  # radial_nps's default region
#: The plane fitted and removed from each region (IEC 62220-1 detrending) takes the zero
#: frequency and part of the next bin with it, so the NPS is compared from 2 / ROI up.
LOWEST = 2 / ROI


def test_mtf_of_a_gaussian_blurred_edge_is_the_gaussian_times_the_pixel_aperture():
    freq, mtf = edge_mtf(slanted_edge_phantom(256, blur_px=1.0))
    assert freq[0] == 0 and mtf[0] == pytest.approx(1.0)
    for f in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4):
        expected = np.exp(-2 * np.pi**2 * f**2) * abs(np.sinc(f))  # Gaussian of 1 px, 1-px pixel aperture
        assert float(np.interp(f, freq, mtf)) == pytest.approx(expected, abs=0.03), f


def test_nps_of_white_noise_is_its_variance_at_every_frequency():
    rng = np.random.default_rng(0)
    freq, nps = radial_nps([rng.normal(0.0, 0.1, (512, 512)) for _ in range(4)], roi=ROI)
    assert freq.min() < 0.02 and freq.max() > 0.48
    kept = freq >= LOWEST
    assert kept.sum() >= len(freq) - 2
    np.testing.assert_allclose(nps[kept], 0.01, rtol=0.10)


def radially_averaged(psd: np.ndarray, bins: int = 32) -> np.ndarray:
    """A 2-D spectrum in FFT order averaged over the annuli radial_nps uses."""
    n = psd.shape[0]
    radius = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    which = np.digitize(radius.ravel(), np.linspace(0, 0.5, bins + 1)) - 1
    valid = (which >= 0) & (which < bins)
    sums = np.bincount(which[valid], weights=psd.ravel()[valid], minlength=bins)
    counts = np.bincount(which[valid], minlength=bins)
    return sums[counts > 0] / counts[counts > 0]


def test_nps_of_gaussian_kernel_noise_falls_with_frequency_and_matches_the_kernel_spectrum():
    noise = parse_noise("10@gauss:1")
    flat = np.full((512, 512), 0.5, dtype=np.float32)
    fields = [noise(flat, seed=seed) - 0.5 for seed in range(4)]
    freq, nps = radial_nps(fields, roi=ROI)
    expected = radially_averaged((10 / 255) ** 2 * GaussianKernel(1.0).psd((ROI, ROI)))
    assert expected.shape == nps.shape
    kept = freq >= LOWEST
    assert np.all(np.diff(nps[kept]) < 0), "the NPS of low-pass correlated noise falls with frequency"
    assert nps[kept][0] > 100 * nps[-1]
    # Up to 0.3 cycles/pixel: beyond, the spectrum is over 1000x below its peak and the
    # periodogram of a 64-px region (no window) leaks low-frequency power into it.
    band = kept & (freq <= 0.3)
    assert band.sum() >= 16
    np.testing.assert_allclose(nps[band], expected[band], rtol=0.15)
