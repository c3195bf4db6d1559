"""Burned-in text, markers and metal painted onto training crops."""

import numpy as np

from xraydenoise.data.overlays import paint_overlays
from xraydenoise.training.datasets import RandomPatchDataset


def _smooth_image(size: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    return (0.3 + 0.3 * np.sin(3 * x) * np.cos(2 * y)).astype(np.float32)


def test_overlays_paint_a_part_of_the_crop_at_flat_values_and_repeat_for_a_seed() -> None:
    image = _smooth_image()
    changed_shares = []
    for seed in range(40):
        out = paint_overlays(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.array_equal(out, paint_overlays(image, np.random.default_rng(seed)))
        changed_shares.append(np.mean(np.abs(out - image) > 1e-3))
    shares = np.array(changed_shares)
    # shapes cover part of the crop, not all of it; a few (text off the edge) may miss it
    assert np.median(shares) > 0.003 and np.mean(shares < 0.9) == 1.0, shares
    # the painted shapes have edges far sharper than the smooth image has anywhere
    out = paint_overlays(image, np.random.default_rng(0))
    assert np.abs(np.diff(out, axis=1)).max() > 10 * np.abs(np.diff(image, axis=1)).max()
    assert np.array_equal(image, _smooth_image()), "the input was written over"


def test_a_dataset_paints_the_share_it_is_given_and_without_overlays_keeps_its_patches() -> None:
    images = [_smooth_image(160) for _ in range(3)]
    plain = RandomPatchDataset(images, crop=96, length=60, seed=0)
    none = RandomPatchDataset(images, crop=96, length=60, seed=0, overlay_probability=0.0)
    some = RandomPatchDataset(images, crop=96, length=60, seed=0, overlay_probability=0.5)
    painted = 0
    for i in range(60):
        a, b, c = plain[i], none[i], some[i]
        assert np.array_equal(a.numpy(), b.numpy())
        painted += not np.array_equal(a.numpy(), c.numpy())
    assert 15 <= painted <= 45, painted
