"""Patch datasets for training and fixed noisy crops for validation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import Record
from ..io import load_image


def load_images(records: list[Record]) -> list[np.ndarray]:
    """Load every image once as float32 in [0,1] (training reads patches from memory)."""
    from rich.progress import track

    return [load_image(r.path).to_float() for r in track(records, description="loading images", transient=True)]


def with_scales(images: list[np.ndarray], scales: list[float]) -> list[np.ndarray]:
    """The images plus anti-aliased downscaled copies of each, one per factor below 1."""
    from ..evaluation.runner import resize_long_side

    out = []
    for image in images:
        for factor in scales:
            out.append(image if factor >= 1 else resize_long_side(image, max(16, int(round(max(image.shape) * factor)))))
    return out


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w)), mode="reflect" if min(image.shape) > max(pad_h, pad_w) else "edge")
    return image


class RandomPatchDataset(Dataset):
    """Random crops, larger than the training patch so rotation and zoom have room.

    Item ``i`` of epoch ``e`` is drawn from a generator seeded by (seed, e, i), so a resumed
    run sees the same patches as an uninterrupted one, on any number of processes.
    """

    def __init__(self, images: list[np.ndarray], *, crop: int, length: int, seed: int) -> None:
        if not images:
            raise ValueError("no training images")
        self.images = images
        self.crop = crop
        self.length = length
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image = _pad_to(self.images[rng.integers(len(self.images))], self.crop)
        top = rng.integers(image.shape[0] - self.crop + 1)
        left = rng.integers(image.shape[1] - self.crop + 1)
        patch = image[top : top + self.crop, left : left + self.crop]
        return torch.from_numpy(np.ascontiguousarray(patch))[None]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    image = _pad_to(image, size)
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def validation_pairs(images: list[np.ndarray], *, crop: int, noise_models: list, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed (clean, noisy, noise-std map, level index) tensors: the same on every run."""
    from ..noise import noise_std_map

    clean, noisy, maps, level = [], [], [], []
    for i, image in enumerate(images):
        crop_img = center_crop(image, crop).astype(np.float32)
        for j, model in enumerate(noise_models):
            z = model(crop_img, seed=seed + 1000 * i + j)
            clean.append(crop_img)
            noisy.append(z.astype(np.float32))
            maps.append(noise_std_map(z, model).astype(np.float32))
            level.append(j)
    as_tensor = lambda xs: torch.from_numpy(np.stack(xs))[:, None]  # noqa: E731
    return as_tensor(clean), as_tensor(noisy), as_tensor(maps), torch.tensor(level)
