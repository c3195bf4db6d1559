"""xraydenoise: denoise X-ray radiographs with deep CNNs and classical filters, and measure it.

>>> import xraydenoise
>>> image = xraydenoise.load_image("chest.dcm")                     # doctest: +SKIP
>>> clean = xraydenoise.denoise(image)                              # doctest: +SKIP
>>> xraydenoise.save_image("chest_denoised.dcm", clean, method="network")  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from .errors import XRayDenoiseError
from .io import Image, load_image, save_image

try:  # the installed distribution's version: one number, in pyproject.toml
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("xraydenoise")
except PackageNotFoundError:  # pragma: no cover - a source tree that was never installed
    __version__ = "0+unknown"
__all__ = ["Image", "XRayDenoiseError", "__version__", "adapt", "denoise", "load_image", "load_model", "save_image"]


def denoise(image, sigma: float | None = None, method: str = "network", *, max_value: float | None = None, **options):
    """Denoise a 2-D radiograph.

    Parameters
    ----------
    image : Image or 2-D array
        An :class:`Image` (from :func:`load_image`) is denoised on its own range (4095 for
        12-bit DICOM) and an Image like it is returned, ready for :func:`save_image`.
        A uint8 / uint16 array is scaled by ``max_value`` (default: the dtype's full range)
        and the result has the same dtype. A float array within [-1, 2] is taken as the
        [0, 1] scale and float32 is returned; a wider one (raw counts) is rescaled from its
        own min..max and returned in its own units.
    sigma : float, optional
        Noise standard deviation on the [0, 1] scale; None: blind network or estimated.
    method : str
        "network" (the shipped pretrained network, default), a classical filter name
        (gaussian, median, wavelet, tv, nlm, bm3d) or a path to .safetensors / .onnx weights.
    max_value : float, optional
        For integer arrays: the value that means full intensity (e.g. 4095 for 12-bit data).
    options
        Network options (backend="onnxruntime", tile=..., fast=True).

    Raises
    ------
    XRayDenoiseError
        For every bad argument: shape, dtype, NaN, sigma, method or options.

    Examples
    --------
    >>> import numpy as np, xraydenoise
    >>> noisy = np.clip(0.5 + 0.1 * np.random.default_rng(0).standard_normal((64, 64)), 0, 1)
    >>> xraydenoise.denoise(noisy, method="gaussian").shape
    (64, 64)
    >>> twelve_bit = np.full((32, 32), 2048, np.uint16)
    >>> int(xraydenoise.denoise(twelve_bit, method="median", max_value=4095).max())
    2048
    """
    from .denoisers import denoise_image, get_denoiser

    if isinstance(image, Image):
        if max_value is not None:
            raise XRayDenoiseError("max_value is for arrays; an Image carries its own")
        return denoise_image(image, get_denoiser(method, **options), sigma)
    return denoise_image(_array_image(image, max_value), get_denoiser(method, **options), sigma).pixels


def _array_image(array, max_value: float | None) -> Image:
    """Wrap a user's array as an Image, refusing what has no unambiguous meaning."""
    array = np.asarray(array)
    if array.ndim != 2 or 0 in array.shape:
        raise XRayDenoiseError(f"expected a non-empty 2-D greyscale image, got shape {array.shape}")
    if array.dtype in (np.uint8, np.uint16):
        full = np.iinfo(array.dtype).max
        if max_value is None:
            max_value = full
        if isinstance(max_value, bool) or not isinstance(max_value, (int, float, np.integer, np.floating)) \
                or not 0 < max_value <= full:
            raise XRayDenoiseError(f"max_value must be a number in 1..{full} for {array.dtype} data, got {max_value!r}")
        if int(array.max()) > max_value:
            raise XRayDenoiseError(f"the array holds {int(array.max())}, above max_value {max_value:g}")
        return Image(array, "png", float(max_value))
    if not np.issubdtype(array.dtype, np.floating):
        raise XRayDenoiseError(f"unsupported dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    if max_value is not None:
        raise XRayDenoiseError("max_value is for integer arrays; float arrays are taken as [0, 1] or rescaled")
    return Image(array.astype(np.float32), "tiff", 1.0)


def load_model(weights=None):
    """Load a network (default: the shipped model) as a torch module; see xraydenoise.weights."""
    from .weights import load_model as _load

    return _load(weights)


def adapt(inputs, *, minutes: float = 5.0, out=None, from_weights=None, device: str = "auto", progress: bool = True):
    """Fine-tune the network on one's own noisy radiographs, without clean images.

    ``inputs``: paths (files, folders, globs) or 2-D arrays. Returns an
    :class:`~xraydenoise.training.adapt.AdaptResult` whose ``weights`` work wherever weights
    do (``denoise(image, method=str(result.weights))``, ``xraydenoise export``). See
    :func:`xraydenoise.training.adapt.adapt` for the method.
    """
    from .training.adapt import adapt as _adapt

    return _adapt(inputs, out=out, minutes=minutes, from_weights=from_weights, device=device, progress=progress)
