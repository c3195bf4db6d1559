"""Patch datasets for training and fixed noisy crops for validation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import Record
from ..data.overlays import paint_overlays
from ..inference import pad_to
from ..io import load_image


def load_images(records: list[Record]) -> list[np.ndarray]:
    """Load every image once as float32 in [0,1] (training reads patches from memory)."""
    from rich.progress import track

    return [load_image(r.path).to_float() for r in track(records, description="loading images", transient=True)]


def with_scales(images: list[np.ndarray], scales: list[float]) -> list[np.ndarray]:
    """The images plus anti-aliased downscaled copies of each, one per factor below 1."""
    from ..data.resize import resize_long_side

    out = []
    for image in images:
        for factor in scales:
            out.append(image if factor >= 1 else resize_long_side(image, max(16, int(round(max(image.shape) * factor)))))
    return out


def inherent_noise(images: list[np.ndarray]) -> list[tuple[float, float, float, float]]:
    """``(a, s, lag1, lag2)`` of the noise each "clean" image already has, as
    :func:`~xraydenoise.noise.estimate_noise` reads it: its level and its correlation.

    The dev radiographs are not noise-free (film grain, the original exposure's quantum
    noise, JPEG), and their flattest blocks hold fine texture; an estimate from an image reads
    all of it along with any noise added. A network told the estimate in use is therefore
    told, in training, what the estimate would read (``tell_inherent``, :func:`tell_inherent`):
    told the level and correlation of a clean image, it learns to leave the image as it is.
    """
    from rich.progress import track

    from ..noise import correlation_descriptor, estimate_noise

    out = []
    for image in track(images, description="reading the images' own noise", transient=True):
        if min(image.shape) < 32:
            out.append((0.0, 0.0, 0.0, 0.0))
            continue
        found = estimate_noise(image)
        out.append((found.a, found.s, *correlation_descriptor(found.kernel)))
    return out


class RandomPatchDataset(Dataset):
    """Random crops, larger than the training patch so rotation and zoom have room.

    Item ``i`` of epoch ``e`` is drawn from a generator seeded by (seed, e, i), so a resumed
    run sees the same patches as an uninterrupted one, on any number of processes. With
    ``inherent`` (one ``(a, s)`` per image, :func:`inherent_noise`) an item is the crop and
    its image's ``(a, s)``. With ``overlay_probability`` that share of the crops has text,
    markers or metal painted on (:mod:`xraydenoise.data.overlays`).
    """

    def __init__(self, images: list[np.ndarray], *, crop: int, length: int, seed: int,
                 inherent: list[tuple[float, float, float, float]] | None = None,
                 overlay_probability: float = 0.0) -> None:
        if not images:
            raise ValueError("no training images")
        self.images = images
        self.crop = crop
        self.length = length
        self.seed = seed
        self.epoch = 0
        self.inherent = inherent
        self.overlay_probability = overlay_probability

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        which = rng.integers(len(self.images))
        image = pad_to(self.images[which], self.crop, self.crop)
        top = rng.integers(image.shape[0] - self.crop + 1)
        left = rng.integers(image.shape[1] - self.crop + 1)
        crop = image[top : top + self.crop, left : left + self.crop]
        # (drawn only when overlays are on, so runs without them keep their patches)
        if self.overlay_probability > 0 and rng.random() < self.overlay_probability:
            crop = paint_overlays(crop, rng)
        patch = torch.from_numpy(np.ascontiguousarray(crop))[None]
        if self.inherent is None:
            return patch
        return patch, torch.tensor(self.inherent[which], dtype=torch.float32)


def tell_inherent(condition: torch.Tensor, noisy: torch.Tensor, inherent: torch.Tensor, *, correlation: bool = True) -> torch.Tensor:
    """The condition an estimate from the noisy image would give: the added noise and the
    image's own (:func:`inherent_noise`) together.

    Two independent noises add their variances and their autocovariances, so the std is
    ``sqrt(std^2 + a z + s^2)`` and each correlation value the two correlations weighted by
    the two (patch-mean) variances. ``inherent`` is ``(B, 4)``: ``(a, s, lag1, lag2)`` per patch.
    ``correlation=False`` tells the image's own level only, with the added noise's correlation.
    """
    a, s = (inherent[:, i].view(-1, 1, 1, 1).to(condition) for i in (0, 1))
    own_var = a * noisy.clamp(min=0) + s**2
    added_var = condition[:, :1] ** 2
    std = (added_var + own_var).sqrt()
    if condition.shape[1] == 1 or not correlation:
        return torch.cat([std, condition[:, 1:]], dim=1)
    added_w = added_var.mean(dim=(2, 3), keepdim=True)
    own_w = own_var.mean(dim=(2, 3), keepdim=True)
    total = (added_w + own_w).clamp(min=1e-12)
    own_rho = inherent[:, 2:4].view(-1, 2, 1, 1).to(condition)
    rho = (added_w * condition[:, 1:3] + own_w * own_rho) / total
    return torch.cat([std, rho.expand(-1, -1, *condition.shape[2:])], dim=1)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    image = pad_to(image, size, size)
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def validation_pairs(images: list[np.ndarray], *, crop: int, noise_models: list, seed: int,
                     correlation: bool = False, with_inherent: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed (clean, noisy, noise condition, level index) tensors: the same on every run.

    The condition is the true noise std map, with the correlation channels when ``correlation``,
    and with the crop's own noise (``with_inherent``: "level" or "all", see :func:`tell_inherent`).
    """
    from ..noise import noise_condition

    clean, noisy, maps, level = [], [], [], []
    for i, image in enumerate(images):
        crop_img = center_crop(image, crop).astype(np.float32)
        own = inherent_noise([crop_img])[0] if with_inherent else None
        for j, model in enumerate(noise_models):
            z = model(crop_img, seed=seed + 1000 * i + j)
            clean.append(crop_img)
            noisy.append(z.astype(np.float32))
            told = noise_condition(z, model, correlation=correlation)
            if own is not None:
                told = tell_inherent(torch.from_numpy(told)[None], torch.from_numpy(z)[None, None], torch.tensor([own]),
                                     correlation=with_inherent == "all")[0].numpy()
            maps.append(told)
            level.append(j)
    as_tensor = lambda xs: torch.from_numpy(np.stack(xs))[:, None]  # noqa: E731
    return as_tensor(clean), as_tensor(noisy), torch.from_numpy(np.stack(maps)), torch.tensor(level)
