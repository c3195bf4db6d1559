"""xraydenoise: denoise X-ray radiographs with deep CNNs and classical filters, and measure it.

>>> import xraydenoise
>>> image = xraydenoise.load_image("chest.dcm")                     # doctest: +SKIP
>>> clean = xraydenoise.denoise(image.pixels)                       # doctest: +SKIP
>>> xraydenoise.save_image("chest_denoised.dcm", image.with_float(clean / image.max_value))  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .errors import XRayDenoiseError
from .io import Image, load_image, save_image

__version__ = "0.1.0"
__all__ = ["Image", "XRayDenoiseError", "__version__", "denoise", "load_image", "load_model", "save_image"]


def denoise(array: np.ndarray, sigma: float | None = None, method: str = "network", **options) -> np.ndarray:
    """Denoise a 2-D radiograph.

    Parameters
    ----------
    array : 2-D array. Float input is taken as [0, 1] and float32 is returned; uint8 and
        uint16 input are scaled by their full range and the result has the same dtype.
    sigma : noise standard deviation on the [0, 1] scale, or None (blind network / estimated).
    method : "network" (the shipped pretrained network, default), a classical filter name
        (gaussian, median, wavelet, tv, nlm, bm3d) or a path to .safetensors / .onnx weights.
    options : network options (backend="onnxruntime", tile=..., fast=True).

    Examples
    --------
    >>> import numpy as np, xraydenoise
    >>> noisy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((64, 64)), 0, 1)
    >>> xraydenoise.denoise(noisy, method="gaussian").shape
    (64, 64)
    """
    from .denoisers import get_denoiser

    array = np.asarray(array)
    if array.ndim != 2:
        raise XRayDenoiseError(f"expected a 2-D greyscale image, got shape {array.shape}")
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        scale = float(np.iinfo(array.dtype).max)
        out = get_denoiser(method, **options)(array.astype(np.float32) / scale, sigma)
        return np.clip(np.rint(np.asarray(out, dtype=np.float64) * scale), 0, scale).astype(array.dtype)
    if not np.issubdtype(array.dtype, np.floating):
        raise XRayDenoiseError(f"unsupported dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    return np.asarray(get_denoiser(method, **options)(array.astype(np.float32), sigma), dtype=np.float32)


def load_model(weights=None):
    """Load a network (default: the shipped model) as a torch module; see xraydenoise.weights."""
    from .weights import load_model as _load

    return _load(weights)
