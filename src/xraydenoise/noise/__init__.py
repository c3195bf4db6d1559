"""Synthetic noise models, variance-stabilising transforms and noise estimators.

All images are 2-D arrays on the ``[0, 1]`` intensity scale. Noise levels follow the
usual denoising convention: a Gaussian ``sigma`` is given on the ``[0, 1]`` scale, so
``25 / 255`` is "sigma 25" (25 grey levels of an 8-bit image).

Noise models (one class each, all with the same interface):

* :class:`GaussianNoise` - additive white Gaussian noise ``z = x + N(0, sigma^2)``.
* :class:`PoissonGaussianNoise` - the standard model of a flat-panel X-ray detector:
  quantum (photon-counting) noise plus electronic read-out noise,
  ``z = a * Poisson(x / a) + N(0, s^2)``, so that ``E[z] = x`` and
  ``Var[z] = a * x + s^2`` (``a`` is the gain: the intensity of one quantum).
* :class:`CorrelatedNoise` - the correlated versions of both, as an indirect detector's
  scintillator and vendor processing make them: unit white noise convolved with a detector
  kernel of unit energy (:class:`GaussianKernel`, :class:`ExponentialKernel`,
  :class:`ArrayKernel` from a measured kernel or noise power spectrum), times ``s`` or
  ``sqrt(a * x + s^2)``.

Every model has ``sample(image, seed=...)`` (numpy; also ``model(image, seed=...)``),
``sample_torch(batch, generator)`` (training), ``std_map(noisy)``, ``kernel``, ``label``,
and ``str(model)``, a text form that :func:`parse_noise` reads back (grammar in
:mod:`xraydenoise.noise.spec`: ``10``, ``pg:0.01:5``, ``10@gauss:1``, ``pg:0.01:3@exp:0.7``).
Constant-std models give ``psd(shape)``, the noise power spectrum BM3D takes.

Noise is seeded: the same seed gives the same array on every machine (for a given numpy
version) because the generator is always ``Generator(PCG64(seed))`` and the arithmetic
is done in float64 before the final cast to float32.

Estimation from one noisy image: :func:`estimate_gaussian_sigma` and
:func:`estimate_poisson_gaussian` for pixel-independent noise, :func:`estimate_noise` for
correlated and signal-dependent noise (level and autocorrelation).
"""

from __future__ import annotations

import numpy as np

from .anscombe import generalized_anscombe, inverse_generalized_anscombe
from .condition import condition_channels, correlation_descriptor, noise_condition, noise_condition_torch, noise_model_for
from .correlated import CorrelatedNoise
from .estimate import NoiseEstimate, estimate_noise
from .kernels import (
    DELTA_KERNEL,
    ArrayKernel,
    ExponentialKernel,
    GaussianKernel,
    Kernel,
    bm3d_psd,
    kernel_from_nps,
)
from .mix import NoiseMix
from .spec import NOISE_SYNTAX, NoiseModel, NoiseRange, parse_noise, parse_noise_range
from .white import GaussianNoise, PoissonGaussianNoise, add_gaussian_noise, add_poisson_gaussian_noise
from .white_estimators import estimate_gaussian_sigma, estimate_poisson_gaussian

__all__ = [
    "ArrayKernel",
    "CorrelatedNoise",
    "DELTA_KERNEL",
    "ExponentialKernel",
    "GaussianKernel",
    "GaussianNoise",
    "Kernel",
    "NOISE_SYNTAX",
    "NoiseEstimate",
    "NoiseMix",
    "NoiseModel",
    "NoiseRange",
    "PoissonGaussianNoise",
    "add_gaussian_noise",
    "add_poisson_gaussian_noise",
    "bm3d_psd",
    "condition_channels",
    "correlation_descriptor",
    "estimate_gaussian_sigma",
    "estimate_noise",
    "estimate_poisson_gaussian",
    "generalized_anscombe",
    "inverse_generalized_anscombe",
    "kernel_from_nps",
    "noise_condition",
    "noise_condition_torch",
    "noise_model_for",
    "noise_std_map",
    "parse_noise",
    "parse_noise_range",
]


def noise_std_map(noisy: np.ndarray, model: NoiseModel) -> np.ndarray:
    """Per-pixel noise std (float32, same shape as ``noisy``).

    ``sigma`` everywhere for :class:`GaussianNoise`; ``sqrt(a * max(z, 0) + s^2)`` for
    :class:`PoissonGaussianNoise` and signal-dependent :class:`CorrelatedNoise`, with the
    noisy image ``z`` standing in for the clean one.
    """
    if not isinstance(model, (GaussianNoise, PoissonGaussianNoise, CorrelatedNoise)):
        raise TypeError(f"unknown noise model {model!r}")
    return model.std_map(noisy)
