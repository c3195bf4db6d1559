"""Detector kernels: the spatial correlation of noise in an indirect X-ray detector.

Correlated noise is unit white Gaussian noise convolved with a kernel ``k`` normalised to
``sum(k**2) == 1``, so the per-pixel variance stays 1 and the std asked for is the std
delivered. The normalised autocorrelation of the noise is then ``k (*) k`` (``rho(0) = 1``)
and its power spectrum ``|FFT(k)|^2``.

* :class:`GaussianKernel` ``(width)`` - ``k(r) ~ exp(-r^2 / (2 width^2))``: white noise blurred
  by a Gaussian of std ``width`` px (``scipy.ndimage.gaussian_filter`` does the same).
* :class:`ExponentialKernel` ``(width)`` - ``k(r) ~ exp(-r / width)``: the long-tailed point
  spread of a scintillator.
* :class:`ArrayKernel` - a measured 2-D kernel, or one derived from a measured noise power
  spectrum by :func:`kernel_from_nps`.

``width == 0`` is the one-pixel kernel (white noise).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import ClassVar

import numpy as np

from xraydenoise.errors import ConfigError

from ._common import check_level, fmt_number, fmt_spec

__all__ = [
    "ArrayKernel",
    "DELTA_KERNEL",
    "ExponentialKernel",
    "GaussianKernel",
    "Kernel",
    "bm3d_psd",
    "kernel_from_nps",
    "load_kernel_file",
]

#: Energy kept when a kernel's support is cut: truncation changes the variance by < 0.01 %.
_KEPT_ENERGY = 0.9999


def _normalised(array: np.ndarray) -> np.ndarray:
    energy = float(np.sum(array * array))
    if not math.isfinite(energy) or energy <= 0:
        raise ConfigError("a detector kernel must have finite values and non-zero energy")
    return array / math.sqrt(energy)


def _radial(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.hypot(yy, xx)


class _KernelBase:
    """What every kernel provides: the normalised array, its autocorrelation and spectrum."""

    @property
    def array(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def radius(self) -> int:
        """Half the kernel's side: the margin of extra noise drawn so the output has no border effect."""
        return self.array.shape[0] // 2

    @property
    def is_white(self) -> bool:
        return self.array.size == 1

    def autocorrelation(self, max_lag: int) -> np.ndarray:
        """Normalised noise autocorrelation ``rho`` at lags ``-max_lag..max_lag`` (2-D, centre 1).

        >>> GaussianKernel(0.0).autocorrelation(1)[1]
        array([0., 1., 0.])
        """
        k = self.array
        # circular autocorrelation on a grid large enough that no lag <= max_lag wraps onto the support
        n = k.shape[0] + max_lag
        power = np.abs(np.fft.rfft2(k, s=(n, n))) ** 2
        full = np.fft.irfft2(power, s=(n, n))
        lags = np.arange(-max_lag, max_lag + 1) % n
        out = full[np.ix_(lags, lags)]
        out[np.abs(out) < 1e-15] = 0.0  # FFT round-off where the true value is exactly 0
        return out

    def psd(self, shape: tuple[int, int]) -> np.ndarray:
        """Unit-variance noise power spectrum on an image grid, FFT order, mean 1: ``|FFT(k)|^2``.

        Times the variance and the number of pixels, this is what ``bm3d(sigma_psd=...)`` takes
        (see :func:`bm3d_psd`).
        """
        h, w = int(shape[0]), int(shape[1])
        k = self.array
        r = k.shape[0] // 2
        if k.shape[0] > h or k.shape[1] > w:  # image smaller than the kernel: wrap it around
            padded = np.zeros((h, w))
            for (i, j), value in np.ndenumerate(k):
                padded[(i - r) % h, (j - r) % w] += value
        else:
            padded = np.zeros((h, w))
            padded[: k.shape[0], : k.shape[1]] = k
            padded = np.roll(padded, (-r, -r), axis=(0, 1))  # centre at (0, 0): zero phase
        return np.abs(np.fft.fft2(padded)) ** 2


@dataclass(frozen=True)
class _WidthKernel(_KernelBase):
    """A radial profile ``f(r / width)`` sampled on ``|dx|, |dy| <= ceil(reach * width)``, unit energy."""

    width: float

    name: ClassVar[str]
    what: ClassVar[str]
    reach: ClassVar[float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_level(f"{self.what} width", self.width, ConfigError))

    @staticmethod
    def profile(r: np.ndarray) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @cached_property
    def array(self) -> np.ndarray:
        if self.width == 0:
            return np.ones((1, 1))
        r = _radial(max(1, math.ceil(self.reach * self.width)))
        return _normalised(self.profile(r / self.width))

    @property
    def spec(self) -> str:
        return f"{self.name}:{fmt_spec(self.width)}"

    @property
    def label(self) -> str:
        return f"{self.name}{fmt_number(self.width)}"


class GaussianKernel(_WidthKernel):
    """Sampled Gaussian ``exp(-r^2 / (2 width^2))`` on ``|dx|, |dy| <= ceil(4 width)``, unit energy.

    >>> k = GaussianKernel(1.0).array
    >>> k.shape, round(float((k ** 2).sum()), 12)
    ((9, 9), 1.0)
    """

    name, what, reach = "gauss", "Gaussian kernel", 4.0

    @staticmethod
    def profile(r: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * r**2)


class ExponentialKernel(_WidthKernel):
    """``exp(-r / width)`` on ``|dx|, |dy| <= ceil(6 width)`` (beyond, < 0.01 % of the energy), unit energy.

    >>> ExponentialKernel(0.7).array.shape
    (11, 11)
    """

    name, what, reach = "exp", "exponential kernel", 6.0

    @staticmethod
    def profile(r: np.ndarray) -> np.ndarray:
        return np.exp(-r)


class ArrayKernel(_KernelBase):
    """A measured kernel: any odd-sized square 2-D array, normalised to unit energy.

    ``source`` is the specification it was read from (``kernel:PATH`` or ``nps:PATH``), kept
    so ``str(model)`` can be parsed back; an in-memory kernel prints its digest instead.

    >>> ArrayKernel(np.array([[0, 1, 0], [1, 2, 1], [0, 1, 0]])).array.round(3)[1]
    array([0.354, 0.707, 0.354])
    """

    def __init__(self, array: np.ndarray, *, source: str | None = None) -> None:
        arr = np.asarray(array, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] % 2 == 0:
            raise ConfigError(f"a detector kernel must be a square 2-D array of odd size, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError("a detector kernel must not contain NaN or infinite values")
        self._array = _normalised(arr)
        self._array.setflags(write=False)
        self.source = source

    @property
    def array(self) -> np.ndarray:
        return self._array

    @cached_property
    def digest(self) -> str:
        return hashlib.sha1(self._array.tobytes() + str(self._array.shape).encode()).hexdigest()[:8]

    @property
    def spec(self) -> str:
        return self.source if self.source else f"kernel:<in-memory {self._array.shape[0]}x{self._array.shape[1]} {self.digest}>"

    @property
    def label(self) -> str:
        return f"kernel{self.digest}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayKernel) and self._array.shape == other._array.shape and bool(
            np.array_equal(self._array, other._array)
        )

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"ArrayKernel({self.spec})"


Kernel = GaussianKernel | ExponentialKernel | ArrayKernel

#: The one-pixel kernel of white noise.
DELTA_KERNEL = GaussianKernel(0.0)


def _crop_energy(kernel: np.ndarray) -> np.ndarray:
    """Smallest centred odd square window holding ``_KEPT_ENERGY`` of the kernel's energy."""
    c = kernel.shape[0] // 2
    total = float(np.sum(kernel**2))
    for r in range(c + 1):
        window = kernel[c - r : c + r + 1, c - r : c + r + 1]
        if np.sum(window**2) >= _KEPT_ENERGY * total:
            return window
    return kernel


def kernel_from_nps(nps: np.ndarray) -> np.ndarray:
    """The zero-phase kernel whose noise has power spectrum ``nps`` (unnormalised, odd square array).

    ``nps`` is 2-D with the zero frequency at the centre (``np.fft.fftshift`` layout, as NPS
    measurements are displayed); only its shape matters, not its scale. The kernel is
    ``ifft(sqrt(nps))`` centred and cut where 99.99 % of its energy is kept.

    >>> k = kernel_from_nps(np.ones((8, 8)))   # flat spectrum: white noise
    >>> k.shape
    (1, 1)
    """
    arr = np.asarray(nps, dtype=np.float64)
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise ConfigError(f"a noise power spectrum must be a 2-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or not np.any(arr > 0):
        raise ConfigError("a noise power spectrum must be finite, >= 0 and not all zero")
    amplitude = np.sqrt(np.fft.ifftshift(arr))
    kernel = np.fft.fftshift(np.real(np.fft.ifft2(amplitude)))
    # make it odd and square around the zero-lag sample (which fftshift put at shape // 2)
    cy, cx = arr.shape[0] // 2, arr.shape[1] // 2
    r = min(cy, cx, arr.shape[0] - 1 - cy, arr.shape[1] - 1 - cx)
    kernel = kernel[cy - r : cy + r + 1, cx - r : cx + r + 1]
    return _crop_energy(kernel)


def load_kernel_file(path: str, *, is_nps: bool) -> ArrayKernel:
    """Read a ``.npy`` kernel (``is_nps=False``) or noise power spectrum (``is_nps=True``)."""
    prefix = "nps" if is_nps else "kernel"
    try:
        array = np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the {prefix} file {path!r}: {str(exc).splitlines()[0]}") from None
    if is_nps:
        array = kernel_from_nps(array)
    return ArrayKernel(array, source=f"{prefix}:{path}")


def bm3d_psd(kernel: Kernel, shape: tuple[int, int], variance: float) -> np.ndarray:
    """Noise PSD in the scaling of ``bm3d.bm3d(z, sigma_psd=...)``: ``|FFT(k)|^2 * N * variance``.

    For white noise this is ``sigma^2 * N`` everywhere, which is what bm3d itself builds from a
    scalar sigma.

    >>> float(bm3d_psd(DELTA_KERNEL, (4, 4), 0.01).mean())
    0.16
    """
    return kernel.psd(shape) * (int(shape[0]) * int(shape[1])) * float(variance)
