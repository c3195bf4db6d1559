"""What a conditioned network is told about the noise: a per-pixel std map and its correlation.

A network trained on one noise family at a time does not need to be told anything; one trained
on white, quantum and detector-correlated noise of every level has to work out, from a patch,
both how loud the noise is and how far it spreads, and at a fixed capacity those two tasks
compete. Told them, it only denoises. The condition is a stack of ``(K, H, W)`` channels:

* channel 0: the noise std at each pixel, ``sqrt(a * z + s^2)`` with the noisy image ``z``
  standing in for the clean one (what :func:`~xraydenoise.noise.noise_std_map` gives);
* channels 1 and 2 (``correlation=True``): the noise's normalised autocorrelation at lags 1
  and 2 px, each the mean of the row and column directions, constant over the image. They
  describe any kernel the same way (Gaussian, exponential or measured), and are 0 for white
  noise: a Gaussian kernel of width 1 px gives 0.78 and 0.37.

The same model object gives the condition in numpy (inference, validation) and in torch
(training), so the two cannot drift apart.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["condition_channels", "correlation_descriptor", "noise_condition", "noise_condition_torch", "noise_model_for"]


def condition_channels(*, correlation: bool) -> int:
    """Number of condition channels: 1 (std map), or 3 with the correlation descriptor."""
    return 3 if correlation else 1


@lru_cache(maxsize=4096)
def correlation_descriptor(kernel) -> tuple[float, float]:
    """Autocorrelation of noise shaped by ``kernel`` at lags 1 and 2 px (row/column mean).

    >>> from xraydenoise.noise import GaussianKernel
    >>> [round(v, 3) for v in correlation_descriptor(GaussianKernel(1.0))]
    [0.779, 0.368]
    >>> correlation_descriptor(GaussianKernel(0.0))
    (0.0, 0.0)
    """
    rho = kernel.autocorrelation(2)  # lags -2..2 on both axes, centre (2, 2) is 1
    lag1 = 0.5 * (rho[2, 3] + rho[3, 2])
    lag2 = 0.5 * (rho[2, 4] + rho[4, 2])
    return float(lag1), float(lag2)


def noise_condition(noisy: np.ndarray, model, *, correlation: bool) -> np.ndarray:
    """The ``(K, H, W)`` float32 condition for ``noisy`` under the noise ``model``."""
    std = model.std_map(noisy).astype(np.float32)
    if not correlation:
        return std[None]
    lag1, lag2 = correlation_descriptor(model.kernel)
    return np.stack([std, np.full_like(std, lag1), np.full_like(std, lag2)])


def noise_condition_torch(noisy, model, *, correlation: bool):
    """The ``(B, K, H, W)`` condition for a noisy batch ``(B, 1, H, W)`` under ``model``."""
    import torch

    std = model.std_map_torch(noisy)
    if not correlation:
        return std
    lag1, lag2 = correlation_descriptor(model.kernel)
    return torch.cat([std, torch.full_like(std, lag1), torch.full_like(std, lag2)], dim=1)


#: Images smaller than this on a side are too small for :func:`estimate_noise` (16 px blocks).
_MIN_ESTIMATE_SIDE = 32


def noise_model_for(image: np.ndarray, noise=None):
    """The noise model a denoiser is told for ``image``: what the user gave, the rest estimated.

    * a noise model (``parse_noise("10@gauss:1")``, ...): used as it is;
    * a number: the std on the [0, 1] scale, with the correlation estimated from the image
      (white Gaussian noise of that std when the estimate finds no correlation);
    * None: level and correlation both estimated (:func:`~xraydenoise.noise.estimate_noise`).

    Images under 32 px a side have too few blocks for the correlation: their noise is taken
    as white, with the white-noise estimator's level.
    """
    from .correlated import CorrelatedNoise
    from .estimate import estimate_noise
    from .white import GaussianNoise
    from .white_estimators import estimate_gaussian_sigma

    if noise is not None and not isinstance(noise, (int, float)):
        return noise
    if min(np.shape(image)) < _MIN_ESTIMATE_SIDE:
        return GaussianNoise(float(noise) if noise is not None else estimate_gaussian_sigma(image))
    found = estimate_noise(image)
    if noise is None:
        return found.model
    if found.kernel.is_white:
        return GaussianNoise(float(noise))
    return CorrelatedNoise(found.kernel, s=float(noise))
