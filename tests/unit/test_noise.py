"""Tests for xraydenoise.noise: noise models, Anscombe transforms and noise estimators.

The estimator tests use real development radiographs (6 per source), full size, with
synthetic noise added without clipping.
"""

from __future__ import annotations

import csv
import dataclasses
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_dev_data
from xraydenoise.errors import ConfigError
from xraydenoise.noise import (
    GaussianNoise,
    PoissonGaussianNoise,
    add_gaussian_noise,
    add_poisson_gaussian_noise,
    estimate_gaussian_sigma,
    estimate_poisson_gaussian,
    generalized_anscombe,
    inverse_generalized_anscombe,
    noise_std_map,
    parse_noise,
)
from xraydenoise.settings import data_dir

SOURCES = ("nih", "kermany", "fracatlas")


# --------------------------------------------------------------------------- real images


def _manifest() -> Path:
    return require_dev_data()


@lru_cache(maxsize=None)
def _real_images(per_source: int = 6) -> tuple[tuple[str, np.ndarray], ...]:
    """``per_source`` images per source, evenly spread over the sorted file list."""
    from PIL import Image

    with _manifest().open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for source in SOURCES:
        paths = sorted(r["path"] for r in rows if r["source"] == source)
        for i in np.linspace(0, len(paths) - 1, per_source).round().astype(int):
            img = np.asarray(Image.open(data_dir() / paths[i]), dtype=np.float32) / 255
            out.append((paths[i], img))
    return tuple(out)


# --------------------------------------------------------------------------- generation


def test_gaussian_noise_statistics() -> None:
    clean = np.full((256, 256), 0.5, np.float32)
    sigma = 25 / 255
    noisy = GaussianNoise(sigma)(clean, seed=0)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    resid = noisy.astype(np.float64) - 0.5
    assert abs(resid.std() / sigma - 1) < 0.02
    assert abs(resid.mean()) < 3 * sigma / 256  # 3 standard errors
    # white: neighbouring pixels are uncorrelated
    assert abs(np.corrcoef(resid[:, :-1].ravel(), resid[:, 1:].ravel())[0, 1]) < 0.02


@pytest.mark.parametrize("x", [0.05, 0.3, 0.8])
@pytest.mark.parametrize(("a", "s"), [(0.01, 5 / 255), (0.002, 2 / 255)])
def test_poisson_gaussian_mean_and_variance(x: float, a: float, s: float) -> None:
    clean = np.full((512, 512), x)
    noisy = PoissonGaussianNoise(a, s)(clean, seed=1).astype(np.float64)
    expected_var = a * x + s**2
    assert abs(noisy.var() / expected_var - 1) < 0.03
    assert abs(noisy.mean() - x) < 4 * np.sqrt(expected_var / clean.size)


def test_poisson_gaussian_without_quantum_noise_is_gaussian() -> None:
    clean = np.full((256, 256), 0.4)
    noisy = add_poisson_gaussian_noise(clean, 0.0, 10 / 255, seed=0).astype(np.float64)
    assert abs(noisy.std() / (10 / 255) - 1) < 0.02


@pytest.mark.parametrize("model", [GaussianNoise(25 / 255), PoissonGaussianNoise(0.01, 5 / 255)])
def test_same_seed_same_noise_other_seed_other_noise(model) -> None:
    clean = np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(64, 80)
    before = clean.copy()
    a, b, c = model(clean, seed=7), model(clean, seed=7), model(clean, seed=8)
    assert a.dtype == np.float32 and a.shape == clean.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(clean, before)  # input untouched


def test_noise_stream_is_pcg64_standard_normal() -> None:
    """The documented contract: Generator(PCG64(seed)).standard_normal, float64 then float32."""
    got = add_gaussian_noise(np.zeros((3, 4)), 0.5, seed=123)
    want = (0.5 * np.random.Generator(np.random.PCG64(123)).standard_normal((3, 4))).astype(np.float32)
    np.testing.assert_array_equal(got, want)


def test_clip_option() -> None:
    clean = np.linspace(0, 1, 4096).reshape(64, 64)
    assert add_gaussian_noise(clean, 0.2, seed=0).min() < 0
    for noisy in (
        GaussianNoise(0.2, clip=True)(clean, seed=0),
        PoissonGaussianNoise(0.05, 0.1, clip=True)(clean, seed=0),
    ):
        assert noisy.min() >= 0 and noisy.max() <= 1


def test_bad_seed_and_levels() -> None:
    img = np.zeros((4, 4))
    with pytest.raises(TypeError):
        add_gaussian_noise(img, 0.1, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        add_gaussian_noise(img, -0.1, seed=0)
    with pytest.raises(ConfigError):
        GaussianNoise(-1.0)
    with pytest.raises(ConfigError):
        PoissonGaussianNoise(0.01, float("nan"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        GaussianNoise(0.1).sigma = 0.2  # type: ignore[misc]


# --------------------------------------------------------------------------- labels, parsing


def test_labels() -> None:
    assert GaussianNoise(25 / 255).label == "gaussian-25"
    assert GaussianNoise(12.5 / 255).label == "gaussian-12.5"
    assert GaussianNoise(10 / 255).label == "gaussian-10"
    assert PoissonGaussianNoise(0.01, 5 / 255).label == "poisson-gaussian-a0.01-s5"
    assert PoissonGaussianNoise(0.002, 2 / 255).label == "poisson-gaussian-a0.002-s2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25", GaussianNoise(25 / 255)),
        ("gaussian:25", GaussianNoise(25 / 255)),
        ("  Gaussian:25 ", GaussianNoise(25 / 255)),
        ("12.5", GaussianNoise(12.5 / 255)),
        ("g:50", GaussianNoise(50 / 255)),
        ("gaussian-10", GaussianNoise(10 / 255)),
        ("pg:0.01:5", PoissonGaussianNoise(0.01, 5 / 255)),
        ("poisson-gaussian:0.01:5", PoissonGaussianNoise(0.01, 5 / 255)),
        ("PG:2e-3:2", PoissonGaussianNoise(0.002, 2 / 255)),
        ("pg:0.01:0", PoissonGaussianNoise(0.01, 0.0)),
    ],
)
def test_parse_noise(text: str, expected) -> None:
    got = parse_noise(text)
    assert type(got) is type(expected)
    for field in dataclasses.fields(expected):
        assert getattr(got, field.name) == pytest.approx(getattr(expected, field.name), rel=1e-12)


@pytest.mark.parametrize(
    "model", [GaussianNoise(25 / 255), GaussianNoise(12.5 / 255), PoissonGaussianNoise(0.01, 5 / 255)]
)
def test_parse_noise_reads_labels(model) -> None:
    assert parse_noise(model.label) == model


@pytest.mark.parametrize(
    "text",
    ["", "abc", "gaussian:", "gaussian:x", "-5", "pg:0.01", "pg:-0.01:5", "pg:0:0", "nan", "pg:0.01:5:1", "poisson:0.01"],
)
def test_parse_noise_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_noise(text)
    assert repr(text) in str(info.value)


def test_parse_noise_error_explains_format() -> None:
    with pytest.raises(ConfigError, match=r"gaussian:25.*pg:A:S"):
        parse_noise("speckle")


# --------------------------------------------------------------------------- Anscombe


def test_generalized_anscombe_formula() -> None:
    z = np.array([0.0, 0.2, 1.0, -1.0])
    a, s = 0.01, 0.02
    want = (2 / a) * np.sqrt(np.maximum(a * z + 3 / 8 * a**2 + s**2, 0))
    np.testing.assert_allclose(generalized_anscombe(z, a, s), want)
    # with a = 1 and s = 0 it is the classical Anscombe transform 2 sqrt(z + 3/8)
    np.testing.assert_allclose(generalized_anscombe(z[:3], 1.0, 0.0), 2 * np.sqrt(z[:3] + 3 / 8))


@pytest.mark.parametrize("x", [0.05, 0.2, 0.5, 0.9])
def test_generalized_anscombe_stabilises_variance(x: float) -> None:
    a, s = 0.01, 5 / 255
    z = add_poisson_gaussian_noise(np.full((256, 256), x), a, s, seed=2)
    assert abs(generalized_anscombe(z, a, s).std() - 1) < 0.03


@pytest.mark.parametrize(("a", "s"), [(0.01, 5 / 255), (0.002, 2 / 255), (0.01, 20 / 255)])
@pytest.mark.parametrize("x", [0.02, 0.05, 0.1, 0.3, 0.7])
def test_inverse_anscombe_is_unbiased(a: float, s: float, x: float) -> None:
    """Monte-Carlo E[GAT(z)] mapped back by the exact unbiased inverse gives x (2 counts and up)."""
    z = add_poisson_gaussian_noise(np.full((500, 500), x), a, s, seed=3)
    expected_d = generalized_anscombe(z, a, s).mean()
    assert inverse_generalized_anscombe(np.array(expected_d), a, s) == pytest.approx(x, rel=0.02)
    # the algebraic inverse is biased at low counts: this is what the exact inverse fixes
    if x / a <= 5:
        algebraic = a * ((expected_d / 2) ** 2 - 3 / 8) - s**2 / a
        assert abs(algebraic / x - 1) > 0.04


def test_inverse_anscombe_range() -> None:
    d = np.linspace(0, 40, 4001)
    inv = inverse_generalized_anscombe(d, 0.01, 5 / 255)
    assert np.all(np.isfinite(inv)) and inv.min() >= 0
    assert np.all(np.diff(inv) >= 0)  # monotone, no blow-up of the D^-3 term near 0
    assert inv[0] == 0
    # large D: approaches the algebraic inverse
    big = np.array(1000.0)
    assert inverse_generalized_anscombe(big, 1.0, 0.0) == pytest.approx(1000**2 / 4 - 1 / 8, rel=1e-6)


# --------------------------------------------------------------------------- estimators


def test_estimate_gaussian_sigma_pure_noise_and_constant() -> None:
    noise = add_gaussian_noise(np.zeros((256, 256)), 0.1, seed=0)
    assert estimate_gaussian_sigma(noise) == pytest.approx(0.1, rel=0.02)
    assert estimate_gaussian_sigma(np.full((32, 32), 0.3)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        estimate_gaussian_sigma(np.zeros((2, 10)))
    with pytest.raises(ValueError):
        estimate_gaussian_sigma(np.zeros((4, 4, 3)))


@pytest.mark.parametrize("level", [10, 25, 50])
def test_estimate_gaussian_sigma_on_real_radiographs(level: int) -> None:
    """Measured (6 images per source, full size, these seeds): mean relative error +0.44 %,
    +0.08 %, +0.02 % and worst image 1.2 %, 0.5 %, 0.5 % at sigma 10, 25, 50."""
    sigma = level / 255
    rel = []
    for i, (_, clean) in enumerate(_real_images()):
        noisy = add_gaussian_noise(clean, sigma, seed=1000 + i)
        rel.append(estimate_gaussian_sigma(noisy) / sigma - 1)
    rel = np.asarray(rel)
    assert abs(rel.mean()) < 0.05, rel
    assert abs(np.median(rel)) < 0.05, rel
    assert np.all(np.abs(rel) < 0.10), rel


@pytest.mark.parametrize(("a", "s"), [(0.01, 5 / 255), (0.002, 2 / 255)])
def test_estimate_poisson_gaussian_on_real_radiographs(a: float, s: float) -> None:
    """Measured (6 images per source, full size, these seeds), |relative error| mean / worst:
    a=0.01, s=5/255: a 1.1 % / 7.7 %, s 1.7 % / 13 %;
    a=0.002, s=2/255: a 3.2 % / 12 %, s 3.8 % / 25 %.

    ``s`` is the hard one: it is the intercept of the variance line, extrapolated to
    intensity 0. On a small image with a narrow intensity range (e.g. FracAtlas 373x454
    films spanning 0.2-0.35 plus bone) ``s^2`` is ~10 % of the variance at the darkest
    level, and the estimate of s can be off by 50 % or more for some noise draws
    (seen once in 54 draws at a=0.002, s=2). So one image in 18 may miss the 30 % band.
    """
    rel_a, rel_s = [], []
    for i, (_, clean) in enumerate(_real_images()):
        noisy = add_poisson_gaussian_noise(clean, a, s, seed=2000 + i)
        est_a, est_s = estimate_poisson_gaussian(noisy)
        rel_a.append(est_a / a - 1)
        rel_s.append(est_s / s - 1)
    rel_a, rel_s = np.abs(rel_a), np.abs(rel_s)
    assert rel_a.mean() < 0.10 and np.median(rel_a) < 0.10 and rel_a.max() < 0.30, rel_a
    assert rel_s.mean() < 0.15 and np.median(rel_s) < 0.10, rel_s
    assert np.count_nonzero(rel_s < 0.30) >= len(rel_s) - 1, rel_s


def test_estimate_poisson_gaussian_on_gaussian_noise() -> None:
    clean = np.tile(np.linspace(0.1, 0.9, 256), (256, 1))
    noisy = add_gaussian_noise(clean, 10 / 255, seed=4)
    a, s = estimate_poisson_gaussian(noisy)
    assert a < 2e-4  # a * 0.5 is < 3 % of s^2
    assert s == pytest.approx(10 / 255, rel=0.05)


def test_estimate_poisson_gaussian_synthetic_ramp() -> None:
    clean = np.tile(np.linspace(0.05, 0.95, 512), (512, 1))
    noisy = add_poisson_gaussian_noise(clean, 0.004, 3 / 255, seed=5)
    a, s = estimate_poisson_gaussian(noisy)
    assert a == pytest.approx(0.004, rel=0.05)
    assert s == pytest.approx(3 / 255, rel=0.1)
    assert estimate_poisson_gaussian(np.full((64, 64), 0.5)) == (0.0, 0.0)


def test_noise_std_map() -> None:
    noisy = np.array([[-0.1, 0.0], [0.25, 1.0]], np.float32)
    g = noise_std_map(noisy, GaussianNoise(0.1))
    assert g.dtype == np.float32 and g.shape == noisy.shape
    np.testing.assert_allclose(g, 0.1)
    pg = noise_std_map(noisy, PoissonGaussianNoise(0.01, 0.02))
    want = np.sqrt(0.01 * np.maximum(noisy, 0) + 0.02**2)
    np.testing.assert_allclose(pg, want, rtol=1e-6)
    assert pg.dtype == np.float32
