"""Tests for xraydenoise.noise.estimate_noise: level and correlation of noise from one image.

The error bounds on real radiographs are those measured in docs/noise-estimation.md (regenerated
by ``python -m xraydenoise.evaluation.noise_estimation_table``), with margin.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from tests.conftest import require_dev_data
from xraydenoise.noise import (
    CorrelatedNoise,
    ExponentialKernel,
    GaussianKernel,
    GaussianNoise,
    PoissonGaussianNoise,
    estimate_gaussian_sigma,
    estimate_noise,
    parse_noise,
)


def _ramp(size: int = 256) -> np.ndarray:
    return np.tile(np.linspace(0.1, 0.9, size), (size, 1))


@pytest.mark.parametrize(
    ("spec", "family"),
    [("10@gauss:1", GaussianKernel), ("25@gauss:1.5", GaussianKernel), ("15@exp:0.7", ExponentialKernel), ("5@gauss:0.5", GaussianKernel)],
)
def test_constant_correlated_noise_on_a_smooth_image(spec: str, family) -> None:
    model = parse_noise(spec)
    found = estimate_noise(model.sample(_ramp(), seed=1), signal_dependent=False)
    assert isinstance(found.kernel, family)
    assert found.kernel.width == pytest.approx(model.kernel.width, abs=0.1)
    assert found.s == pytest.approx(model.s, rel=0.08)
    assert found.a == 0
    assert isinstance(found.model, CorrelatedNoise)
    np.testing.assert_allclose(found.autocorrelation, model.kernel.autocorrelation(3), atol=0.05)
    # what the blocks showed is what the kernel reads through the detrending and the flat-block selection
    from xraydenoise.noise.estimate import _WIDTHS, _half_plane_lags, _selected_patterns

    patterns = _selected_patterns("gauss" if family is GaussianKernel else "exp", 16, 3)
    expected = patterns[int(np.argmin(np.abs(_WIDTHS - model.kernel.width)))]
    measured = [found.measured_autocorrelation[3 + dy, 3 + dx] for dy, dx in _half_plane_lags(3)]
    np.testing.assert_allclose(measured, expected, atol=0.03)


def test_the_shipped_pattern_table_is_what_the_simulation_gives() -> None:
    """The fit's table (flat_block_patterns.npz) against a fresh simulation: a stale table
    (the selection or the detrending changed) would bias every width the estimator reads."""
    from xraydenoise.noise.estimate import _PATTERN_TABLE, _WIDTHS, _selected_patterns, _simulated_pattern

    assert _PATTERN_TABLE.is_file()
    for family in ("gauss", "exp"):
        table = _selected_patterns(family, 16, 3)
        assert table.shape[0] == len(_WIDTHS)
        for k in (0, 7, 20, 44):
            np.testing.assert_allclose(table[k], _simulated_pattern(family, float(_WIDTHS[k]), 16, 3), atol=1e-6)


def test_signal_dependent_correlated_noise_is_found() -> None:
    model = parse_noise("pg:0.01:3@exp:0.7")
    found = estimate_noise(model.sample(_ramp(), seed=2))
    assert found.a == pytest.approx(0.01, rel=0.1)
    assert found.std(0.5) == pytest.approx(np.sqrt(0.01 * 0.5 + (3 / 255) ** 2), rel=0.05)
    assert isinstance(found.kernel, ExponentialKernel) and found.kernel.width == pytest.approx(0.7, abs=0.1)
    assert found.model.is_signal_dependent


def test_white_noise_gives_a_white_model() -> None:
    found = estimate_noise(GaussianNoise(10 / 255).sample(_ramp(), seed=3))
    assert found.kernel.width == 0 and isinstance(found.model, GaussianNoise)
    assert found.model.sigma == pytest.approx(10 / 255, rel=0.05)
    pg = estimate_noise(PoissonGaussianNoise(0.01, 5 / 255).sample(_ramp(), seed=3))
    assert isinstance(pg.model, PoissonGaussianNoise) and pg.a == pytest.approx(0.01, rel=0.1)


def test_white_estimator_misreads_correlated_noise_and_this_one_does_not() -> None:
    """The bug report: with 1 px correlation at 15/255 the white estimator reads about 1.5/255."""
    noisy = parse_noise("15@gauss:1").sample(_ramp(), seed=4)
    assert estimate_gaussian_sigma(noisy) * 255 < 2.5
    assert estimate_noise(noisy).s * 255 == pytest.approx(15, rel=0.08)


def test_estimate_is_deterministic_and_checks_its_input() -> None:
    noisy = parse_noise("10@gauss:1").sample(_ramp(64), seed=5)
    a, b = estimate_noise(noisy), estimate_noise(noisy)
    assert (a.s, a.a, a.kernel) == (b.s, b.a, b.kernel)
    with pytest.raises(ValueError, match="too small"):
        estimate_noise(np.zeros((16, 64)))
    with pytest.raises(ValueError, match="NaN"):
        estimate_noise(np.full((64, 64), np.nan))
    with pytest.raises(ValueError, match="block"):
        estimate_noise(noisy, block=4)


@lru_cache(maxsize=None)
def _crops():
    require_dev_data()
    from xraydenoise.evaluation.noise_estimation_table import dev_crops

    return dev_crops()


@pytest.mark.parametrize(("spec", "max_mean_error", "max_width_error"),
                         [("25@gauss:1", 0.10, 0.1), ("pg:0.01:3@exp:0.7", 0.15, 0.15), ("10@gauss:1", 0.35, 0.2)])
def test_on_dev_radiograph_crops(spec: str, max_mean_error: float, max_width_error: float) -> None:
    """Within the errors measured in docs/noise-estimation.md (with margin); the images'
    own texture makes the estimate high at low noise levels."""
    model = parse_noise(spec)
    errors, widths = [], []
    for i, (_, clean) in enumerate(_crops()):
        found = estimate_noise(model.sample(clean, seed=100 + i))
        true = float(model.std_map(np.array([[0.5]]))[0, 0])
        errors.append(found.std(0.5) / true - 1)
        widths.append(found.kernel.width - model.kernel.width)
    assert abs(np.mean(errors)) < max_mean_error, errors
    assert abs(np.mean(widths)) < max_width_error, widths


def test_smallest_image_and_bad_options() -> None:
    found = estimate_noise(parse_noise("20@gauss:1").sample(_ramp(32), seed=6))
    assert np.isfinite(found.s) and found.s > 0
    with pytest.raises(ValueError, match="keep_quantile"):
        estimate_noise(_ramp(64), keep_quantile=0)


@pytest.mark.parametrize("block", [8, 9, 16])
@pytest.mark.parametrize("shape", [(64, 64), (77, 103)])
def test_block_means_from_cells_are_the_means_of_every_half_overlapping_window(block, shape) -> None:
    from xraydenoise.noise.estimate import _half_overlapping_block_means

    a = np.random.default_rng(0).random(shape)
    step = block // 2
    windows = np.lib.stride_tricks.sliding_window_view(a, (block, block))[::step, ::step]
    np.testing.assert_allclose(_half_overlapping_block_means(a, block), windows.mean(axis=(2, 3)).ravel(), rtol=1e-12)



def test_the_estimate_runs_its_matrix_products_on_one_blas_thread_and_restores_the_setting(monkeypatch):
    """OpenBLAS threads left spinning after the estimate slow the network that runs next
    (hardware.blas_on_one_thread); the user's own setting comes back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from xraydenoise.noise import estimate as estimate_module

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen: list[set[int]] = []
    original = estimate_module._flat_block_autocorrelation

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(estimate_module, "_flat_block_autocorrelation", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}, "numpy's BLAS is not one that threadpoolctl can see"
        estimate_noise(GaussianNoise(10 / 255)(_ramp(), seed=0))
        assert seen and all(threads == {1} for threads in seen)
        assert blas_threads() == {2}
