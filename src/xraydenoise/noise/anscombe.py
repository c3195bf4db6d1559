"""Generalised Anscombe transform (variance stabilisation of Poisson-Gaussian noise) and its exact unbiased inverse."""

from __future__ import annotations

import math

import numpy as np

from ._common import as_float64, check_level

__all__ = ["generalized_anscombe", "inverse_generalized_anscombe"]


def generalized_anscombe(z: np.ndarray, a: float, s: float) -> np.ndarray:
    """Generalised Anscombe transform (GAT) for ``z = a * Poisson(x / a) + N(0, s^2)``.

    ``f(z) = (2 / a) * sqrt(max(a * z + 3/8 a^2 + s^2, 0))``: the noise of ``f(z)`` has
    approximately unit variance whatever ``x`` (Starck, Murtagh & Bijaoui 1998; zero
    Gaussian mean). Returns float64.
    """
    a = check_level("a", a, ValueError)
    s = check_level("s", s, ValueError)
    if a <= 0:
        raise ValueError("the generalised Anscombe transform needs a gain a > 0")
    z = as_float64(z)
    return (2.0 / a) * np.sqrt(np.maximum(a * z + 0.375 * a * a + s * s, 0.0))


_SQRT_3_2 = math.sqrt(1.5)


def inverse_generalized_anscombe(d: np.ndarray, a: float, s: float) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`generalized_anscombe`.

    Reference: M. Makitalo and A. Foi, "A closed-form approximation of the exact unbiased
    inverse of the Anscombe variance-stabilizing transformation", IEEE Trans. Image Process.
    20(9):2697-2698, 2011, and "Optimal inversion of the generalized Anscombe transformation
    for Poisson-Gaussian noise", IEEE Trans. Image Process. 22(1):91-103, 2013 (their
    ``GenAnscombe_inverse_closed_form.m``). With ``sigma = s / a``::

        I(D) = 1/4 D^2 + 1/4 sqrt(3/2) D^-1 - 11/8 D^-2 + 5/8 sqrt(3/2) D^-3 - 1/8 - sigma^2
        x    = a * max(I(D), 0)

    ``d`` is the *denoised* transformed image, i.e. an estimate of ``E[f(z)]``; mapping it
    with this inverse (rather than the algebraic inverse ``(D/2)^2 - 3/8 - sigma^2``) removes
    the bias of the non-linear transform. The Poisson part is exactly 0 at
    ``D = sqrt(3/2)`` and increasing above it; below (where the D^-3 term would blow up)
    the result is 0. Returns float64, >= 0.
    """
    a = check_level("a", a, ValueError)
    s = check_level("s", s, ValueError)
    if a <= 0:
        raise ValueError("the inverse Anscombe transform needs a gain a > 0")
    d = as_float64(d)
    dd = np.maximum(d, _SQRT_3_2)  # the polynomial is <= 0 below this point: clamp, avoid D -> 0
    poisson = (
        0.25 * dd**2
        + 0.25 * _SQRT_3_2 / dd
        - 1.375 / dd**2
        + 0.625 * _SQRT_3_2 / dd**3
        - 0.125
    )
    sigma = s / a
    return a * np.maximum(poisson - sigma * sigma, 0.0)
