"""The shipped model: present, loadable, blind, and tiled inference that matches whole-image inference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xraydenoise.weights import load_model, shipped_weights


def test_shipped_weights_and_card_are_in_the_package():
    path = shipped_weights()
    assert path.exists(), "the pretrained model must ship inside the package"
    card = json.loads(path.with_suffix(".json").read_text())
    for key in ("architecture", "options", "data", "noise", "training", "validation"):
        assert key in card
    assert card["blind"] is True
    assert path.stat().st_size < 10 * 1024**2
    model = load_model()
    assert not model.uses_noise_map


def test_tiled_inference_matches_whole_image_on_a_1024_radiograph(chest_image):
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.noise import GaussianNoise

    assert chest_image.shape == (1024, 1024)
    noisy = GaussianNoise(25 / 255)(chest_image, seed=0).astype(np.float32)
    whole = NetworkDenoiser(tile=1024)(noisy)
    tiled = NetworkDenoiser(tile=512)(noisy)
    diff = np.abs(whole - tiled)
    assert diff.max() < 1e-3, f"max difference {diff.max():.2e}"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_public_denoise_keeps_integer_dtype(dtype, chest_image):
    import xraydenoise

    scale = np.iinfo(dtype).max
    noisy = np.clip(chest_image[:130, :97] + 0.05 * np.random.default_rng(0).standard_normal((130, 97)), 0, 1)
    out = xraydenoise.denoise((noisy * scale).round().astype(dtype))
    assert out.dtype == dtype and out.shape == (130, 97)
    as_float = xraydenoise.denoise(noisy.astype(np.float32))
    assert as_float.dtype == np.float32
    assert np.abs(out / scale - as_float).max() < 2 / 255
