"""What a network is told about the noise: std map and correlation, the same in numpy and torch."""

import math

import numpy as np
import pytest
import torch

from xraydenoise.noise import (
    CorrelatedNoise,
    ExponentialKernel,
    GaussianKernel,
    GaussianNoise,
    NoiseMix,
    PoissonGaussianNoise,
    correlation_descriptor,
    noise_condition,
    noise_condition_torch,
    noise_model_for,
    parse_noise,
)


@pytest.mark.parametrize("width", [0.8, 1.0, 1.5])
def test_correlation_of_gaussian_kernel_noise_is_that_of_the_continuous_kernel(width):
    # Noise blurred by a Gaussian of std w has autocorrelation exp(-d^2 / (4 w^2)); the sampled
    # kernel is close to it from about 0.8 px (below, the pixel grid coarsens it).
    lag1, lag2 = correlation_descriptor(GaussianKernel(width))
    assert lag1 == pytest.approx(math.exp(-1 / (4 * width**2)), abs=0.02)
    assert lag2 == pytest.approx(math.exp(-4 / (4 * width**2)), abs=0.02)


def test_white_noise_has_no_correlation_and_wider_kernels_more():
    assert correlation_descriptor(GaussianKernel(0.0)) == (0.0, 0.0)
    widths = [0.3, 0.7, 1.2, 1.8]
    for family in (GaussianKernel, ExponentialKernel):
        lag1 = [correlation_descriptor(family(w))[0] for w in widths]
        assert lag1 == sorted(lag1) and 0 < lag1[0] < lag1[-1] < 1


@pytest.mark.parametrize("spec", ["10", "pg:0.01:5", "10@gauss:1", "pg:0.01:3@exp:0.7"])
def test_numpy_and_torch_tell_the_same(spec, chest_crop):
    model = parse_noise(spec)
    noisy = model.sample(chest_crop, seed=0)
    told = noise_condition(noisy, model, correlation=True)
    assert told.shape == (3, *noisy.shape) and told.dtype == np.float32
    told_torch = noise_condition_torch(torch.from_numpy(noisy)[None, None], model, correlation=True)[0].numpy()
    assert np.allclose(told, told_torch, atol=1e-6)
    assert np.allclose(told[0], model.std_map(noisy))
    assert noise_condition(noisy, model, correlation=False).shape == (1, *noisy.shape)


def test_a_training_mix_tells_each_patch_its_own_noise(chest_crop):
    mix = NoiseMix.from_specs([(1.0, "g:5..30@exp:0.3..1.5")])
    clean = torch.from_numpy(np.stack([chest_crop[:64, :64]] * 4))[:, None]
    noisy, told = mix.sample_torch(clean, torch.Generator().manual_seed(0), correlation=True)
    assert noisy.shape == (4, 1, 64, 64) and told.shape == (4, 3, 64, 64)
    lag1 = told[:, 1, 0, 0]
    assert torch.all(told[:, 1] == lag1[:, None, None]) and len(set(lag1.tolist())) == 4  # one model per patch
    measured = [float(noisy[i] .sub(clean[i]).std()) for i in range(4)]
    assert np.allclose(measured, told[:, 0, 0, 0].tolist(), rtol=0.25)


def test_what_the_user_gives_is_used_and_the_rest_estimated(chest_image):
    clean = np.ascontiguousarray(chest_image[200:456, 200:456])
    model = parse_noise("15@gauss:1")
    noisy = model.sample(clean, seed=3)
    assert noise_model_for(noisy, model) is model
    given_level = noise_model_for(noisy, 12 / 255)
    assert isinstance(given_level, CorrelatedNoise) and given_level.s == pytest.approx(12 / 255)
    assert given_level.kernel.width == pytest.approx(1.0, abs=0.15)  # correlation read from the image
    estimated = noise_model_for(noisy, None)
    assert estimated.s * 255 == pytest.approx(15, rel=0.2)
    white = GaussianNoise(10 / 255).sample(clean, seed=1)
    assert isinstance(noise_model_for(white, 10 / 255), (GaussianNoise, CorrelatedNoise))
    tiny = noise_model_for(np.full((8, 8), 0.5, np.float32), None)  # too small to estimate a correlation
    assert isinstance(tiny, GaussianNoise)
    assert isinstance(noise_model_for(np.zeros((8, 8), np.float32), PoissonGaussianNoise(0.01, 0.0)), PoissonGaussianNoise)
