"""Pixel-independent noise: additive white Gaussian and Poisson-Gaussian (quantum + electronic).

The numpy samplers are the project's reference noise (the report's numbers depend on them):
``Generator(PCG64(seed))``, float64 arithmetic, one final cast to float32. The torch samplers
draw the same distributions for training batches from a ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xraydenoise.errors import ConfigError

from ._common import as_float64, check_level, fmt_number, fmt_spec, rng
from .kernels import DELTA_KERNEL, GaussianKernel, bm3d_psd

__all__ = ["GaussianNoise", "PoissonGaussianNoise", "add_gaussian_noise", "add_poisson_gaussian_noise"]


def add_gaussian_noise(
    image: np.ndarray, sigma: float, *, seed: int, clip: bool = False
) -> np.ndarray:
    """Return ``image + N(0, sigma^2)`` as float32 (``sigma`` on the [0, 1] scale).

    ``clip=True`` clips the result to ``[0, 1]`` (what an 8-bit detector would store);
    note that clipping makes the noise non-Gaussian and biased near 0 and 1.
    """
    sigma = check_level("sigma", sigma, ValueError)
    x = as_float64(image)
    z = x + sigma * rng(seed).standard_normal(x.shape)
    if clip:
        np.clip(z, 0.0, 1.0, out=z)
    return z.astype(np.float32)


def add_poisson_gaussian_noise(
    image: np.ndarray, a: float, s: float, *, seed: int, clip: bool = False
) -> np.ndarray:
    """Return ``a * Poisson(max(x, 0) / a) + N(0, s^2)`` as float32.

    ``a`` is the gain (intensity of one quantum, on the [0, 1] scale: ``1/a`` quanta make
    full white) and ``s`` the std of the electronic noise on the [0, 1] scale. The mean is
    ``x`` and the variance ``a * x + s^2``. ``a = 0`` is the limit without quantum noise.
    """
    a = check_level("a", a, ValueError)
    s = check_level("s", s, ValueError)
    x = as_float64(image)
    generator = rng(seed)
    if a > 0:
        z = a * generator.poisson(np.maximum(x, 0.0) / a).astype(np.float64)
    else:
        z = x.copy()
    z += s * generator.standard_normal(x.shape)
    if clip:
        np.clip(z, 0.0, 1.0, out=z)
    return z.astype(np.float32)


def _clip_torch(z, clip: bool):
    return z.clamp(0.0, 1.0) if clip else z


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise; ``sigma`` on the [0, 1] scale (25/255 is "sigma 25").

    >>> model = GaussianNoise(25 / 255)
    >>> str(model), model.label
    ('25', 'gaussian-25')
    >>> model.sample(np.zeros((2, 2)), seed=0).dtype
    dtype('float32')
    """

    sigma: float
    clip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_level("Gaussian sigma", self.sigma, ConfigError))

    def __call__(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        return add_gaussian_noise(image, self.sigma, seed=seed, clip=self.clip)

    def sample(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        """The noisy image (float32), the same array on every machine for a given seed."""
        return self(image, seed=seed)

    def sample_torch(self, clean, generator):
        """Noisy batch (same shape and dtype as ``clean``, any shape) drawn from ``generator``."""
        import torch

        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return _clip_torch(clean + self.sigma * noise, self.clip)

    def std_map(self, noisy: np.ndarray) -> np.ndarray:
        """Per-pixel noise std (float32): ``sigma`` everywhere."""
        return np.full(np.shape(noisy), self.sigma, dtype=np.float32)

    def std_map_torch(self, noisy):
        import torch

        return torch.full_like(noisy, self.sigma)

    @property
    def kernel(self) -> GaussianKernel:
        return DELTA_KERNEL

    @property
    def is_signal_dependent(self) -> bool:
        return False

    def psd(self, shape: tuple[int, int]) -> np.ndarray:
        """Noise power spectrum in bm3d's ``sigma_psd`` scaling: ``sigma^2 * N`` everywhere."""
        return bm3d_psd(DELTA_KERNEL, shape, self.sigma**2)

    @property
    def spec(self) -> str:
        """Text form read back by :func:`~xraydenoise.noise.parse_noise` (sigma in grey levels)."""
        return fmt_spec(self.sigma * 255)

    def __str__(self) -> str:
        return self.spec

    @property
    def label(self) -> str:
        """Short name, e.g. ``gaussian-25`` (sigma in grey levels of 255)."""
        return f"gaussian-{fmt_number(self.sigma * 255)}"


@dataclass(frozen=True)
class PoissonGaussianNoise:
    """X-ray quantum + electronic noise: ``z = a * Poisson(x / a) + N(0, s^2)``.

    ``a`` (gain) and ``s`` (electronic noise std) are both on the [0, 1] scale.

    >>> model = PoissonGaussianNoise(0.01, 5 / 255)
    >>> str(model), model.label
    ('pg:0.01:5', 'poisson-gaussian-a0.01-s5')
    """

    a: float
    s: float
    clip: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", check_level("Poisson-Gaussian gain a", self.a, ConfigError))
        object.__setattr__(self, "s", check_level("Poisson-Gaussian s", self.s, ConfigError))

    def __call__(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        return add_poisson_gaussian_noise(image, self.a, self.s, seed=seed, clip=self.clip)

    def sample(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        """The noisy image (float32), the same array on every machine for a given seed."""
        return self(image, seed=seed)

    def sample_torch(self, clean, generator):
        """Noisy batch (same shape and dtype as ``clean``) drawn from ``generator``."""
        import torch

        z = torch.poisson(clean.clamp(min=0) / self.a, generator=generator) * self.a if self.a > 0 else clean
        normal = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return _clip_torch(z + self.s * normal, self.clip)

    def std_map(self, noisy: np.ndarray) -> np.ndarray:
        """``sqrt(a * max(z, 0) + s^2)`` (float32), the noisy image standing in for the clean one."""
        z = as_float64(noisy)
        return np.sqrt(self.a * np.maximum(z, 0.0) + self.s**2).astype(np.float32)

    def std_map_torch(self, noisy):
        return (self.a * noisy.clamp(min=0) + self.s**2).sqrt()

    @property
    def kernel(self) -> GaussianKernel:
        return DELTA_KERNEL

    @property
    def is_signal_dependent(self) -> bool:
        return self.a > 0

    @property
    def spec(self) -> str:
        """Text form read back by :func:`~xraydenoise.noise.parse_noise` (``s`` in grey levels)."""
        return f"pg:{fmt_spec(self.a)}:{fmt_spec(self.s * 255)}"

    def __str__(self) -> str:
        return self.spec

    @property
    def label(self) -> str:
        """Short name, e.g. ``poisson-gaussian-a0.01-s5`` (``s`` in grey levels of 255)."""
        return f"poisson-gaussian-a{self.a:g}-s{fmt_number(self.s * 255)}"
