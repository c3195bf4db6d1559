"""Tests for the correlated noise models, detector kernels, the text syntax and training mixes.

The pixel-independent models' reference behaviour is in tests/unit/test_noise.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xraydenoise.errors import ConfigError, XRayDenoiseError
from xraydenoise.noise import (
    DELTA_KERNEL,
    ArrayKernel,
    CorrelatedNoise,
    ExponentialKernel,
    GaussianKernel,
    GaussianNoise,
    NoiseMix,
    PoissonGaussianNoise,
    bm3d_psd,
    kernel_from_nps,
    noise_std_map,
    parse_noise,
    parse_noise_range,
)

KERNELS = [GaussianKernel(0.5), GaussianKernel(1.0), ExponentialKernel(0.7), ExponentialKernel(1.5)]


def _empirical_autocorrelation(noise: np.ndarray, max_lag: int) -> np.ndarray:
    """Mean over pixel pairs of ``n(p) n(p + lag) / var`` for lags in ``[-L, L]^2``."""
    n = noise - noise.mean()
    h, w = n.shape
    out = np.empty((2 * max_lag + 1, 2 * max_lag + 1))
    for dy in range(-max_lag, max_lag + 1):
        for dx in range(-max_lag, max_lag + 1):
            a = n[max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)]
            b = n[max(0, -dy) : h + min(0, -dy), max(0, -dx) : w + min(0, -dx)]
            out[dy + max_lag, dx + max_lag] = np.mean(a * b)
    return out / np.mean(n * n)


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_has_unit_energy_and_is_symmetric(kernel) -> None:
    k = kernel.array
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert np.sum(k**2) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k[::-1, ::-1])
    rho = kernel.autocorrelation(3)
    assert rho[3, 3] == pytest.approx(1.0)
    assert 0 < rho[3, 4] < 1


def test_width_zero_is_white() -> None:
    for kernel in (GaussianKernel(0), ExponentialKernel(0)):
        assert kernel.is_white and kernel.radius == 0
        np.testing.assert_array_equal(kernel.psd((4, 6)), np.ones((4, 6)))


def test_gaussian_kernel_is_scipy_gaussian_filter_of_white_noise() -> None:
    """"White noise blurred by a Gaussian of w px and rescaled" is the Gaussian kernel of width w."""
    from scipy import ndimage

    impulse = np.zeros((41, 41))
    impulse[20, 20] = 1
    blurred = ndimage.gaussian_filter(impulse, 1.0, truncate=4.0)[16:25, 16:25]
    np.testing.assert_allclose(GaussianKernel(1.0).array, blurred / np.sqrt(np.sum(blurred**2)), atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernel_from_nps_inverts_psd(kernel) -> None:
    """A kernel measured as its NPS comes back with the same autocorrelation."""
    nps = np.fft.fftshift(kernel.psd((64, 64)))
    back = ArrayKernel(kernel_from_nps(nps))
    np.testing.assert_allclose(back.autocorrelation(3), kernel.autocorrelation(3), atol=2e-3)


def test_array_kernel_validation() -> None:
    with pytest.raises(ConfigError, match="odd size"):
        ArrayKernel(np.ones((2, 2)))
    with pytest.raises(ConfigError, match="non-zero energy"):
        ArrayKernel(np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="NaN"):
        ArrayKernel(np.full((3, 3), np.nan))
    with pytest.raises(ConfigError):
        kernel_from_nps(-np.ones((8, 8)))
    assert ArrayKernel(np.ones((3, 3))) == ArrayKernel(2 * np.ones((3, 3)))  # normalised


def test_bm3d_psd_scaling_matches_bm3d_white_noise_convention() -> None:
    """bm3d builds ``sigma^2 * N`` from a scalar sigma; the white kernel gives the same."""
    shape, sigma = (16, 24), 0.1
    np.testing.assert_allclose(bm3d_psd(DELTA_KERNEL, shape, sigma**2), np.full(shape, sigma**2 * 16 * 24))
    psd = bm3d_psd(GaussianKernel(1.0), shape, sigma**2)
    assert psd.mean() == pytest.approx(sigma**2 * 16 * 24)  # Parseval: unit energy kernel
    assert psd[0, 0] > psd[8, 12]  # low-pass


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("kernel", KERNELS)
def test_correlated_noise_std_and_autocorrelation_match_the_model(kernel) -> None:
    model = CorrelatedNoise(kernel, s=10 / 255)
    noisy = model.sample(np.full((512, 512), 0.5), seed=0).astype(np.float64)
    resid = noisy - 0.5
    assert resid.std() / model.s == pytest.approx(1.0, abs=0.04)
    np.testing.assert_allclose(_empirical_autocorrelation(resid, 3), kernel.autocorrelation(3), atol=0.03)


@pytest.mark.parametrize("kernel", [GaussianKernel(1.0), ExponentialKernel(0.7)])
def test_psd_given_to_bm3d_matches_the_empirical_nps(kernel) -> None:
    """Mean periodogram of sampled noise vs ``psd(shape)``, in bm3d's scaling, over frequency bands."""
    shape = (64, 64)
    model = CorrelatedNoise(kernel, s=20 / 255)
    periodograms = [np.abs(np.fft.fft2(model.sample(np.zeros(shape), seed=k).astype(np.float64))) ** 2 for k in range(200)]
    empirical = np.mean(periodograms, axis=0)
    want = model.psd(shape)
    assert empirical.mean() / want.mean() == pytest.approx(1.0, abs=0.02)
    fy, fx = np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij")
    radius = np.hypot(fy, fx)
    for lo, hi in ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3)):
        band = (radius >= lo) & (radius < hi)
        assert empirical[band].mean() / want[band].mean() == pytest.approx(1.0, abs=0.05), (lo, hi)


@pytest.mark.parametrize("x", [0.1, 0.4, 0.9])
def test_signal_dependent_correlated_noise_variance(x: float) -> None:
    a, s = 0.01, 3 / 255
    model = CorrelatedNoise(ExponentialKernel(0.7), a=a, s=s)
    noisy = model.sample(np.full((512, 512), x), seed=3).astype(np.float64)
    assert noisy.var() / (a * x + s**2) == pytest.approx(1.0, abs=0.06)
    assert noisy.mean() == pytest.approx(x, abs=4 * np.sqrt((a * x + s**2) * 20 / noisy.size))
    with pytest.raises(ValueError):
        model.psd((8, 8))
    with pytest.raises(ValueError):
        _ = model.sigma


def test_correlated_sampling_is_seeded_and_white_kernel_equals_gaussian_noise() -> None:
    clean = np.linspace(0, 1, 48 * 40).reshape(48, 40)
    model = CorrelatedNoise(GaussianKernel(1.0), s=0.05)
    a, b, c = model.sample(clean, seed=5), model(clean, seed=5), model.sample(clean, seed=6)
    assert a.dtype == np.float32 and a.shape == clean.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(CorrelatedNoise(DELTA_KERNEL, s=0.05)(clean, seed=5), GaussianNoise(0.05)(clean, seed=5))
    clipped = CorrelatedNoise(GaussianKernel(1.0), s=0.3, clip=True)(clean, seed=0)
    assert clipped.min() >= 0 and clipped.max() <= 1


MODELS = [
    GaussianNoise(20 / 255),
    PoissonGaussianNoise(0.01, 5 / 255),
    CorrelatedNoise(GaussianKernel(1.0), s=20 / 255),
    CorrelatedNoise(ExponentialKernel(0.7), a=0.01, s=3 / 255),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.label)
def test_numpy_and_torch_samplers_agree_in_distribution(model) -> None:
    """Same std (at two intensities) and neighbour correlation from both samplers."""
    clean = np.concatenate([np.full((128, 256), 0.2), np.full((128, 256), 0.8)])
    stats = []
    for z in (
        model.sample(clean, seed=0).astype(np.float64),
        model.sample_torch(torch.from_numpy(clean)[None, None], torch.Generator().manual_seed(0))[0, 0].numpy(),
    ):
        r = z - clean
        stats.append(
            [r[:128].std(), r[128:].std(), np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1]]
        )
    np.testing.assert_allclose(stats[0][:2], stats[1][:2], rtol=0.05)
    assert stats[0][2] == pytest.approx(stats[1][2], abs=0.03)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.label)
def test_std_map_numpy_and_torch(model) -> None:
    noisy = np.array([[-0.1, 0.0], [0.25, 1.0]], np.float32)
    got = model.std_map(noisy)
    assert got.dtype == np.float32 and got.shape == noisy.shape
    np.testing.assert_allclose(noise_std_map(noisy, model), got)
    np.testing.assert_allclose(model.std_map_torch(torch.from_numpy(noisy)).numpy(), got, rtol=1e-6)
    if model.is_signal_dependent:
        np.testing.assert_allclose(got, np.sqrt(model.a * np.maximum(noisy, 0) + model.s**2), rtol=1e-6)


# --------------------------------------------------------------------------- text form


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10@gauss:1", CorrelatedNoise(GaussianKernel(1.0), s=10 / 255)),
        ("25@gauss:1.0", CorrelatedNoise(GaussianKernel(1.0), s=25 / 255)),
        ("pg:0.01:3@exp:0.7", CorrelatedNoise(ExponentialKernel(0.7), a=0.01, s=3 / 255)),
        (" G:15 @ Gaussian:1.5 ", CorrelatedNoise(GaussianKernel(1.5), s=15 / 255)),
        ("gaussian:10@exponential:0.5", CorrelatedNoise(ExponentialKernel(0.5), s=10 / 255)),
        ("gaussian-10-gauss1", CorrelatedNoise(GaussianKernel(1.0), s=10 / 255)),
        ("poisson-gaussian-a0.01-s3-exp0.7", CorrelatedNoise(ExponentialKernel(0.7), a=0.01, s=3 / 255)),
        ("10@gauss:0", CorrelatedNoise(DELTA_KERNEL, s=10 / 255)),
    ],
)
def test_parse_correlated(text: str, expected) -> None:
    assert parse_noise(text) == expected


@pytest.mark.parametrize(
    "model",
    MODELS
    + [
        GaussianNoise(12.345 / 255),
        PoissonGaussianNoise(0.0023, 1.7 / 255),
        CorrelatedNoise(ExponentialKernel(0.3), s=0.0123),
        CorrelatedNoise(GaussianKernel(0.8), a=0.004, s=0.0),
    ],
    ids=str,
)
def test_str_round_trip_and_labels(model) -> None:
    back = parse_noise(str(model))
    assert type(back) is type(model)
    assert back == model or str(back) == str(model)
    for name in ("sigma", "a", "s"):
        if not (name == "sigma" and getattr(model, "a", 0) > 0) and hasattr(model, name):
            assert getattr(back, name) == pytest.approx(getattr(model, name), rel=1e-9)
    if model.kernel.is_white or hasattr(model.kernel, "width"):
        assert parse_noise(model.label).label == model.label


def test_quality_target_settings_are_expressible() -> None:
    assert str(parse_noise("10@gauss:1")) == "10@gauss:1"
    assert parse_noise("25@gauss:1").label == "gaussian-25-gauss1"
    target = parse_noise("pg:0.01:3@exp:0.7")
    np.testing.assert_allclose(target.std_map(np.array([[0.5]])), np.sqrt(0.01 * 0.5 + (3 / 255) ** 2), rtol=1e-6)
    assert target.kernel.array[target.kernel.radius, target.kernel.radius + 1] / target.kernel.array.max() == pytest.approx(
        np.exp(-1 / 0.7)
    )


def test_file_kernels(tmp_path) -> None:
    kernel_file = tmp_path / "Kernel.npy"
    np.save(kernel_file, GaussianKernel(1.0).array * 7)
    model = parse_noise(f"10@kernel:{kernel_file}")
    assert isinstance(model.kernel, ArrayKernel)
    np.testing.assert_allclose(model.kernel.array, GaussianKernel(1.0).array)
    assert str(model) == f"10@kernel:{kernel_file}"  # path case kept
    assert parse_noise(str(model)) == model
    nps_file = tmp_path / "nps.npy"
    np.save(nps_file, np.fft.fftshift(ExponentialKernel(0.7).psd((64, 64))))
    from_nps = parse_noise(f"pg:0.01:3@nps:{nps_file}")
    np.testing.assert_allclose(from_nps.kernel.autocorrelation(2), ExponentialKernel(0.7).autocorrelation(2), atol=2e-3)
    with pytest.raises(ConfigError, match="cannot read the kernel file") as info:
        parse_noise(f"10@kernel:{tmp_path / 'missing.npy'}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10@", "unknown detector kernel"),
        ("10@gauss", "unknown detector kernel"),
        ("10@speckle:1", "unknown detector kernel"),
        ("10@gauss:-1", "kernel width must be a finite number >= 0"),
        ("10@gauss:nan", "unknown detector kernel"),
        ("10@gauss:1@exp:1", "more than one '@'"),
        ("-10@gauss:1", "Gaussian sigma must be a finite number >= 0"),
        ("nan@gauss:1", "expected a Gaussian sigma"),
        ("pg:0.01:-3@exp:0.7", "noise S must be a finite number >= 0"),
        ("pg:0:0@exp:0.7", "both 0"),
        ("pg:0.01@exp:0.7", "expected a Gaussian sigma"),
        ("10..20", "only allowed in a training mix"),
        ("1e999@gauss:1", "finite"),
    ],
)
def test_malformed_specs_give_one_line_config_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_noise(text)
    message = str(info.value)
    assert isinstance(info.value, XRayDenoiseError)
    assert problem in message and repr(text) in message and "\n" not in message


def test_bad_model_parameters() -> None:
    with pytest.raises(ConfigError):
        CorrelatedNoise(GaussianKernel(1.0), s=float("nan"))
    with pytest.raises(ConfigError):
        CorrelatedNoise(GaussianKernel(1.0), a=-0.01)
    with pytest.raises(ConfigError):
        GaussianKernel(float("nan"))
    with pytest.raises(ConfigError):
        CorrelatedNoise("gauss:1")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- training mixes


def test_noise_range_parsing_and_errors() -> None:
    r = parse_noise_range("pg:0.0005..0.03:0..10@exp:0.3..1.5")
    assert (r.kind, r.a, r.family, r.width) == ("pg", (0.0005, 0.03), "exp", (0.3, 1.5))
    assert r.s == pytest.approx((0.0, 10 / 255))
    with pytest.raises(ConfigError, match="runs backwards"):
        parse_noise_range("g:55..0")


def test_noise_mix_draws_families_by_weight_and_parameters_in_range() -> None:
    mix = NoiseMix.from_specs([(1, "g:0..55"), (3, "pg:0.0005..0.03:0..10@gauss:0.3..1.5")])
    generator = torch.Generator().manual_seed(0)
    models = [mix.draw(generator) for _ in range(2000)]
    correlated = [m for m in models if isinstance(m, CorrelatedNoise)]
    assert len(correlated) / len(models) == pytest.approx(0.75, abs=0.03)
    assert all(isinstance(m, GaussianNoise) and 0 <= m.sigma <= 55 / 255 for m in models if m not in correlated)
    widths = np.array([m.kernel.width for m in correlated])
    gains = np.array([m.a for m in correlated])
    assert widths.min() >= 0.3 and widths.max() <= 1.5
    assert gains.min() >= 0.0005 and gains.max() <= 0.03
    # log-uniform gain: the median is the geometric mean of the range
    assert np.median(gains) == pytest.approx(np.sqrt(0.0005 * 0.03), rel=0.15)
    with pytest.raises(ConfigError):
        NoiseMix.from_specs([(0, "10")])


def test_noise_mix_samples_batches_with_std_maps() -> None:
    mix = NoiseMix.from_specs([(1, "g:5..5"), (1, "pg:0.01:5@exp:0.7")])
    clean = torch.full((8, 1, 32, 32), 0.5)
    a = mix.sample_torch(clean, torch.Generator().manual_seed(1))
    b = mix.sample_torch(clean, torch.Generator().manual_seed(1))
    noisy, std = a
    assert noisy.shape == std.shape == clean.shape
    assert torch.equal(noisy, b[0]) and torch.equal(std, b[1])
    values = {round(float(s.mean()), 4) for s in std if float(s.std()) == 0}
    assert values <= {round(5 / 255, 4)}
