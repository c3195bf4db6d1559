"""The shipped model: present, loadable, routed, and tiled inference that matches whole-image inference."""

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
    # Two experts behind one gate, told the noise the image's own estimate gives (blind to the user)
    assert card["architecture"] == "routed" and set(card["experts"]) == {"white", "correlated"}
    assert path.stat().st_size < 10 * 1024**2
    model = load_model()
    assert model.noise_channels == 3


def test_tiled_inference_matches_whole_image_on_a_1024_radiograph(chest_image):
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.noise import GaussianNoise

    assert chest_image.shape == (1024, 1024)
    noisy = GaussianNoise(25 / 255)(chest_image, seed=0).astype(np.float32)
    whole = NetworkDenoiser(tile=1024)(noisy)
    network = NetworkDenoiser(tile=512)
    # the tiles overlap by the network's receptive radius (55 px), not a fixed 128 px
    assert network.margin == 55 == NetworkDenoiser(backend="onnxruntime").margin
    tiled = network(noisy)
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


def test_self_ensemble_undoes_each_rotation_and_flip(chest_image):
    """With an identity network the 8-way ensemble must give the input back, pixel for pixel."""
    from xraydenoise.denoisers import NetworkDenoiser

    net = NetworkDenoiser(ensemble=True, tile=64, margin=16)
    net.backend.run = lambda image, noise_map=None: image  # an identity "network"
    crop = chest_image[100:197, 300:431]  # odd, non-square: rotations swap height and width
    assert np.array_equal(net(crop), crop)


def test_self_ensemble_lowers_the_error_on_a_real_radiograph(chest_image):
    from xraydenoise.denoisers import get_denoiser
    from xraydenoise.metrics import psnr
    from xraydenoise.noise import GaussianNoise

    clean = chest_image[256:512, 256:512]
    noisy = GaussianNoise(25 / 255)(clean, seed=1).astype(np.float32)
    single, ensemble = get_denoiser("network")(noisy), get_denoiser("network-x8")(noisy)
    assert 0 < np.abs(single - ensemble).max() < 0.05
    assert psnr(clean, ensemble) > psnr(clean, single)


def test_the_shipped_model_in_bf16_matches_fp32_within_the_default_paths_tolerance():
    # The default path may run bf16 only where it gives fp32's result on the probe images (512 px
    # radiographs): with the image-reading convolutions in fp32 it does, on white and detector
    # noise (plain autocast was 0.06-0.08 dB off, all in one direction). On smaller crops single
    # images scatter by up to ~0.015 dB either way, but on average bf16 loses nothing.
    from xraydenoise.denoisers import MATCH_DB, NetworkDenoiser, _probe_images
    from xraydenoise.metrics import psnr

    fp32, bf16 = NetworkDenoiser(backend="torch"), NetworkDenoiser(backend="torch", fast=True)
    assert bf16.backend.bytes_per_pixel < fp32.backend.bytes_per_pixel  # so its tiles are larger
    crop_gaps = []
    for clean, noisy in _probe_images():
        gap = psnr(bf16(noisy), clean) - psnr(fp32(noisy), clean)
        assert abs(gap) < MATCH_DB, gap
        for top in (0, 256):
            for left in (0, 256):
                window = (slice(top, top + 256), slice(left, left + 256))
                crop_gaps.append(psnr(bf16(noisy[window]), clean[window]) - psnr(fp32(noisy[window]), clean[window]))
    assert abs(np.mean(crop_gaps)) < MATCH_DB / 2, crop_gaps
