"""The paper's augmentation of training patches (kornia), used by training and drawn by the report."""

from __future__ import annotations

import torch


class Augment(torch.nn.Module):
    """The paper's augmentation: rotation within +-15 degrees, horizontal/vertical flips, zoom 0.8-1.2.

    Applied to the enlarged random crops, then centre-cropped to the training patch so the
    rotated corners never show.

    Flips move whole pixels; a rotation or zoom resamples the patch (bilinear), which damps its
    finest detail: a network that only ever sees resampled patches learns that radiographs are
    smoother than they are and, at low noise, softens sharp edges, burned-in text and metal.
    ``affine_probability`` is the share of patches that are rotated and zoomed; the others keep
    their pixels exactly as recorded.
    """

    def __init__(self, patch: int, affine_probability: float = 1.0) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.patch = patch
        self.ops = K.AugmentationSequential(
            K.RandomHorizontalFlip(p=0.5),
            K.RandomVerticalFlip(p=0.5),
            K.RandomAffine(degrees=15.0, scale=(0.8, 1.2), p=affine_probability, padding_mode="reflection"),
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        out = self.ops(crops)
        top = (out.shape[-2] - self.patch) // 2
        left = (out.shape[-1] - self.patch) // 2
        return out[..., top : top + self.patch, left : left + self.patch].clamp(0.0, 1.0)
