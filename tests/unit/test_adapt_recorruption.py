"""R2R's recorruption on dark films: it must match the noise where half the noisy pixels are <= 0."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from xraydenoise.noise import CorrelatedNoise, GaussianKernel
from xraydenoise.training.adapt import ALPHA, SCORE_CROP, NoisyImage, held_out_score

#: Quantum noise through a 1 px detector kernel, loud against a dark film (std 0.013 at x = 0.008),
#: as the estimator often reads it there (no constant term).
NOISE = CorrelatedNoise(GaussianKernel(1.0), a=0.02, s=0.0)


def dark_film(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A film background near 0 beside a brighter band: (clean, noisy)."""
    clean = np.full((256, 256), 0.008, np.float32)
    clean[:, 160:] = np.linspace(0.05, 0.4, 96, dtype=np.float32)
    return clean, NOISE.sample(clean, seed=10_000 + seed)  # not a seed the score draws its z with


def test_the_recorruption_has_the_noise_std_in_the_dark_background_too():
    clean, noisy = dark_film()
    image = NoisyImage("dark", noisy, NOISE)
    draws = np.stack([NOISE.sample(image.signal, seed=s).astype(np.float64) - image.signal for s in range(8)])
    dark = np.s_[:, 8:-8, 8:150]
    true_std = float(NOISE.std_map(clean)[8:-8, 8:150].mean())
    assert abs(draws[dark].std() / true_std - 1) < 0.04
    # Taken at the noisy pixels instead, the std follows each pixel's own noise: 0 where it
    # pushed the pixel below 0, larger where it pushed it up, and too large on average.
    at_noisy = NOISE.std_map(noisy)[8:-8, 8:150]
    assert np.sqrt(np.mean(at_noisy.astype(np.float64) ** 2)) / true_std > 1.06


class _Filter:
    """A stand-in network: the identity (keeps all noise) or a Gaussian blur."""

    noise_channels = 0

    def __init__(self, width: float) -> None:
        self.width = width

    def _run(self, image, condition):
        return ndimage.gaussian_filter(image, self.width) if self.width else image


def test_the_held_out_score_estimates_the_error_against_the_unseen_clean_image():
    images = [NoisyImage(f"dark{s}", noisy, NOISE) for s in range(3) for clean, noisy in [dark_film(s)]]
    cleans = [dark_film(s)[0] for s in range(3)]
    assert min(cleans[0].shape) <= SCORE_CROP  # the score sees the whole image
    for width in (0.0, 1.0, 2.0):
        network = _Filter(width)
        _, estimated = held_out_score(network, images)
        errors = []
        for index, (image, clean) in enumerate(zip(images, cleans)):
            for draw in range(4):  # the score's own draws, against the clean image
                z = NOISE.sample(image.signal, seed=7919 * index + draw).astype(np.float64) - image.signal
                out = network._run((image.pixels + ALPHA * z).astype(np.float32), None)
                errors.append(np.mean((out.astype(np.float64) - clean) ** 2))
        true = 10 * np.log10(1 / np.mean(errors))
        assert abs(estimated - true) < 0.4, (width, estimated, true)
