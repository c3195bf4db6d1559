"""Downscaling radiographs by their long side, as evaluation and training both do."""

from __future__ import annotations

import numpy as np


def resize_long_side(image: np.ndarray, size: int | None) -> np.ndarray:
    """``image`` downscaled (bicubic, anti-aliased) so its long side is at most ``size``; never upscaled.

    >>> resize_long_side(np.zeros((40, 20), np.float32), 10).shape
    (10, 5)
    """
    if size is None or max(image.shape) <= size:
        return image.astype(np.float32, copy=False)
    from skimage.transform import resize

    scale = size / max(image.shape)
    shape = (max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale)))
    return resize(image, shape, order=3, anti_aliasing=True, preserve_range=True).clip(0, 1).astype(np.float32)
