"""Image-quality metrics.

Two families, on purpose:

* :func:`psnr` and :func:`ssim` (numpy) are the numbers that are *reported* (benchmark,
  report, README). They are scikit-image's ``peak_signal_noise_ratio`` and
  ``structural_similarity`` with ``data_range=1`` and scikit-image's defaults (7x7
  uniform window, K1=0.01, K2=0.03, sample covariance), so anyone can reproduce them.
* :func:`batch_psnr` and :func:`batch_ssim` (torch) are for monitoring training on batches.
  ``batch_ssim`` uses torchmetrics' SSIM, which has an 11x11 *Gaussian* window
  (sigma 1.5, Wang et al. 2004), so it differs slightly from the reported SSIM
  (typically by well under 0.02 on radiographs; see tests/unit/test_metrics.py).
  Never report the training metric as the result.

torch is imported inside the batch functions only: the core package works without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["psnr", "ssim", "batch_psnr", "batch_ssim"]


def _pair(clean: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(test, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"expected 2-D grey-level images, got shape {a.shape}")
    return a, b


def psnr(clean: np.ndarray, test: np.ndarray, *, data_range: float = 1.0) -> float:
    """PSNR in dB: ``10 log10(data_range^2 / MSE)``; ``inf`` for identical images.

    Same as ``skimage.metrics.peak_signal_noise_ratio(clean, test, data_range=data_range)``
    (computed here directly in float64 so identical images give ``inf`` without a warning).
    """
    a, b = _pair(clean, test)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim(clean: np.ndarray, test: np.ndarray, *, data_range: float = 1.0) -> float:
    """Mean SSIM from ``skimage.metrics.structural_similarity`` with its default settings
    (7x7 uniform window, K1=0.01, K2=0.03, sample covariance) and the given ``data_range``."""
    from skimage.metrics import structural_similarity

    a, b = _pair(clean, test)
    if min(a.shape) < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {a.shape}")
    return float(structural_similarity(a, b, data_range=data_range))


def _batch(pred: "torch.Tensor", target: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim == 2:
        pred, target = pred[None, None], target[None, None]
    elif pred.ndim == 3:
        pred, target = pred[:, None], target[:, None]
    elif pred.ndim != 4:
        raise ValueError(f"expected (H, W), (N, H, W) or (N, C, H, W) tensors, got {tuple(pred.shape)}")
    dtype = torch.promote_types(pred.dtype, torch.float32)
    return pred.to(dtype), target.to(dtype)


def batch_psnr(pred: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    """Mean over the batch of the per-image PSNR (dB, data range 1) - a 0-d tensor.

    Per-image first, then averaged (not the PSNR of the batch-wide MSE), which is how the
    reported numbers are aggregated too. A perfect image gives ``inf``. No gradient is
    needed for monitoring, but the computation is differentiable where finite.
    """
    import torch

    p, t = _batch(pred, target)
    mse = torch.mean((p - t) ** 2, dim=tuple(range(1, p.ndim)))
    return torch.mean(10.0 * torch.log10(1.0 / mse))


def batch_ssim(pred: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    """Mean SSIM over the batch from torchmetrics (11x11 Gaussian window, data range 1).

    This is the *training* metric; reported SSIM comes from :func:`ssim` (skimage).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    p, t = _batch(pred, target)
    return cast("torch.Tensor", structural_similarity_index_measure(p, t, data_range=1.0))  # one value, not a tuple
