"""Validation and formatting helpers shared by the noise models, parser and estimators."""

from __future__ import annotations

import math

import numpy as np


def fmt_number(value: float) -> str:
    """Format for labels: at most 2 decimals, trailing zeros and '.' dropped (25.0 -> '25')."""
    text = f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_spec(value: float) -> str:
    """Format for specifications: 10 significant digits, so ``parse_noise(str(m))`` gives ``m`` back.

    ``25 / 255 * 255`` is 25.000000000000004 in float64; 10 digits print it as ``25``.
    """
    return f"{float(value):.10g}"


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed)


def rng(seed: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(check_seed(seed)))


def as_float64(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"image must be a numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def as_image2d(image: np.ndarray, *, min_size: int = 1) -> np.ndarray:
    arr = as_float64(image)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D (grey-level) image, got shape {arr.shape}")
    if min(arr.shape) < min_size:
        raise ValueError(f"image of shape {arr.shape} is too small (need at least {min_size} px a side)")
    if not np.all(np.isfinite(arr)):
        raise ValueError("image contains NaN or infinite values")
    return arr


def check_level(name: str, value: float, error: type[Exception]) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise error(f"{name} must be a finite number >= 0, got {value!r}")
    return value
