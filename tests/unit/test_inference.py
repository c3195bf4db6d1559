import numpy as np
import pytest
import torch

from xraydenoise.inference import TorchBackend, _blend_window, choose_tile_size, tile_inference
from xraydenoise.weights import load_model


def test_blend_window_is_smooth_and_symmetric():
    w = _blend_window(64, 16)
    assert w[0] > 0 and w[16:48].min() == 1.0
    assert np.allclose(w, w[::-1])
    assert np.all(np.diff(w[:16]) > 0)


def test_pointwise_function_is_reproduced_exactly_by_tiling():
    rng = np.random.default_rng(0)
    image = rng.random((301, 257)).astype(np.float32)
    out = tile_inference(lambda x, m: x * 2.0, image, tile=64, overlap=16)
    assert np.allclose(out, image * 2.0, atol=1e-6)


def test_tiled_network_matches_whole_image_inference(tiny_weights, chest_image):
    torch.manual_seed(0)
    backend = TorchBackend(load_model(tiny_weights))
    image = np.ascontiguousarray(chest_image[:300, :260])
    whole = backend.run(image)
    tiled = tile_inference(backend.run, image, tile=128, overlap=32)
    assert np.abs(whole - tiled).max() < 1e-3


def test_overlap_must_be_under_half_the_tile():
    with pytest.raises(ValueError):
        tile_inference(lambda x, m: x, np.zeros((100, 100), np.float32), tile=32, overlap=16)


def test_tile_size_follows_the_memory_budget():
    small = choose_tile_size(4096, 4096, memory_budget=400 * 1024**2)
    large = choose_tile_size(4096, 4096, memory_budget=2 * 1024**3)
    assert 512 <= small < large <= 2048
    assert choose_tile_size(300, 200, memory_budget=2 * 1024**3) == 300
