"""The training augmentation: flips keep pixels exact; only the rotated and zoomed share is resampled."""

import numpy as np
import pytest
import torch

from xraydenoise.data.augmentation import Augment
from xraydenoise.training.config import TrainConfig


def _crops(n: int = 64, size: int = 48) -> torch.Tensor:
    # Pixel-sharp content (random values): any resampling changes its values.
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def _flips_of_centre(crop: torch.Tensor, patch: int) -> list[torch.Tensor]:
    top = (crop.shape[-1] - patch) // 2
    out = []
    for flipped in (crop, crop.flip(-1), crop.flip(-2), crop.flip(-1).flip(-2)):
        out.append(flipped[..., top : top + patch, top : top + patch])
    return out


def _is_exact(out: torch.Tensor, crop: torch.Tensor, patch: int) -> bool:
    return any(torch.equal(out, c) for c in _flips_of_centre(crop, patch))


def test_without_the_affine_part_every_patch_keeps_its_recorded_pixels() -> None:
    torch.manual_seed(1)
    crops = _crops()
    out = Augment(32, affine_probability=0.0)(crops)
    assert out.shape == (64, 1, 32, 32)
    assert all(_is_exact(out[i], crops[i], 32) for i in range(len(crops)))


@pytest.mark.parametrize("probability", [0.25, 0.75])
def test_the_affine_probability_is_the_share_of_resampled_patches(probability: float) -> None:
    torch.manual_seed(2)
    crops = _crops(n=400)
    out = Augment(32, affine_probability=probability)(crops)
    resampled = np.mean([not _is_exact(out[i], crops[i], 32) for i in range(len(crops))])
    assert abs(resampled - probability) < 0.08, resampled


def test_the_papers_augmentation_resamples_every_patch_and_new_configs_keep_most_exact() -> None:
    torch.manual_seed(3)
    crops = _crops()
    out = Augment(32)(crops)
    assert not any(_is_exact(out[i], crops[i], 32) for i in range(len(crops)))
    assert TrainConfig().data.affine_probability == 0.5
    assert TrainConfig.from_yaml("configs/rdn-xray-white.yaml").data.affine_probability == 1.0
