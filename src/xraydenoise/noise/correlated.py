"""Spatially correlated detector noise, with a constant or a signal-dependent std.

``z = x + std(x) * (k * n)``: unit white Gaussian noise ``n`` convolved with a detector kernel
``k`` of unit energy (so ``k * n`` has unit variance per pixel), times
``std(x) = sqrt(a * max(x, 0) + s^2)``. ``a = 0`` is correlated Gaussian noise of std ``s``;
``a > 0`` is the correlated version of Poisson-Gaussian noise: its Gaussian approximation,
with the same variance ``a * x + s^2``, low-pass filtered the way a scintillator spreads each
quantum's light (Bath et al. 2005; Veldkamp et al. 2009 add dose-reduction noise this way).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from xraydenoise.errors import ConfigError

from ._common import as_float64, as_image2d, check_level, fmt_number, fmt_spec, rng
from .kernels import ArrayKernel, ExponentialKernel, GaussianKernel, Kernel, bm3d_psd

__all__ = ["CorrelatedNoise"]


@dataclass(frozen=True)
class CorrelatedNoise:
    """Correlated Gaussian noise of std ``sqrt(a * x + s^2)`` shaped by a detector kernel.

    Parameters
    ----------
    kernel
        :class:`~xraydenoise.noise.GaussianKernel`, :class:`~xraydenoise.noise.ExponentialKernel`
        or :class:`~xraydenoise.noise.ArrayKernel`.
    a, s
        Signal-dependent variance slope and constant std, on the [0, 1] scale (``a = 0``:
        constant std ``s``).
    clip
        Clip the noisy image to [0, 1].

    Examples
    --------
    >>> model = CorrelatedNoise(GaussianKernel(1.0), s=10 / 255)
    >>> str(model), model.label
    ('10@gauss:1', 'gaussian-10-gauss1')
    >>> str(CorrelatedNoise(ExponentialKernel(0.7), a=0.01, s=3 / 255))
    'pg:0.01:3@exp:0.7'
    """

    kernel: Kernel
    a: float = 0.0
    s: float = 0.0
    clip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kernel, (GaussianKernel, ExponentialKernel, ArrayKernel)):
            raise ConfigError(f"unknown detector kernel {self.kernel!r}")
        object.__setattr__(self, "a", check_level("correlated noise slope a", self.a, ConfigError))
        object.__setattr__(self, "s", check_level("correlated noise std s", self.s, ConfigError))

    @property
    def sigma(self) -> float:
        """The constant std (``s``); only for ``a == 0``."""
        if self.a > 0:
            raise ValueError("signal-dependent noise has no single sigma: use std_map()")
        return self.s

    @property
    def is_signal_dependent(self) -> bool:
        return self.a > 0

    def _std(self, x):
        return (self.a * x.clip(min=0) + self.s**2) ** 0.5 if self.a > 0 else self.s

    def __call__(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        return self.sample(image, seed=seed)

    def sample(self, image: np.ndarray, *, seed: int) -> np.ndarray:
        """The noisy image (float32), the same array on every machine for a given seed.

        White noise is drawn on the image grown by the kernel's radius, so the correlated
        noise is stationary up to the border (no boundary rule leaks into it).
        """
        x = as_image2d(image)
        r = self.kernel.radius
        unit = rng(seed).standard_normal((x.shape[0] + 2 * r, x.shape[1] + 2 * r))
        if r:
            unit = ndimage.convolve(unit, self.kernel.array, mode="constant")[r:-r, r:-r]
        z = x + self._std(x) * unit
        if self.clip:
            np.clip(z, 0.0, 1.0, out=z)
        return z.astype(np.float32)

    def sample_torch(self, clean, generator):
        """Noisy batch ``(B, 1, H, W)`` drawn from ``generator`` (same distribution as :meth:`sample`)."""
        import torch
        import torch.nn.functional as F

        r = self.kernel.radius
        b, c, h, w = clean.shape
        unit = torch.randn((b * c, 1, h + 2 * r, w + 2 * r), generator=generator, dtype=clean.dtype, device=clean.device)
        if r:
            # conv2d correlates: flip the kernel so this is the convolution of sample()
            weight = torch.as_tensor(np.ascontiguousarray(self.kernel.array[::-1, ::-1]), dtype=clean.dtype, device=clean.device)
            unit = F.conv2d(unit, weight[None, None])
        z = clean + self._std(clean) * unit.reshape(b, c, h, w)
        return z.clamp(0.0, 1.0) if self.clip else z

    def std_map(self, noisy: np.ndarray) -> np.ndarray:
        """Per-pixel noise std (float32); the noisy image stands in for the clean one."""
        z = as_float64(noisy)
        if self.a > 0:
            return np.sqrt(self.a * np.maximum(z, 0.0) + self.s**2).astype(np.float32)
        return np.full(z.shape, self.s, dtype=np.float32)

    def std_map_torch(self, noisy):
        import torch

        if self.a > 0:
            return (self.a * noisy.clamp(min=0) + self.s**2).sqrt()
        return torch.full_like(noisy, self.s)

    def psd(self, shape: tuple[int, int]) -> np.ndarray:
        """Noise power spectrum in bm3d's ``sigma_psd`` scaling (constant std only).

        Signal-dependent noise has no single PSD; a denoiser stabilises its variance first
        (generalised Anscombe), after which the noise has unit variance and
        ``bm3d_psd(kernel, shape, 1.0)``.
        """
        if self.a > 0:
            raise ValueError("signal-dependent noise has no single PSD: stabilise its variance first")
        return bm3d_psd(self.kernel, shape, self.s**2)

    @property
    def spec(self) -> str:
        """Text form read back by :func:`~xraydenoise.noise.parse_noise`: ``LEVEL@KERNEL``."""
        level = f"pg:{fmt_spec(self.a)}:{fmt_spec(self.s * 255)}" if self.a > 0 else fmt_spec(self.s * 255)
        return f"{level}@{self.kernel.spec}"

    def __str__(self) -> str:
        return self.spec

    @property
    def label(self) -> str:
        """Short name, e.g. ``gaussian-10-gauss1`` or ``poisson-gaussian-a0.01-s3-exp0.7``."""
        if self.a > 0:
            level = f"poisson-gaussian-a{self.a:g}-s{fmt_number(self.s * 255)}"
        else:
            level = f"gaussian-{fmt_number(self.s * 255)}"
        return f"{level}-{self.kernel.label}"
