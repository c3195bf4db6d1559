import numpy as np
import pytest
import torch

from xraydenoise.inference import TorchBackend, choose_tile_size, pad_to, tile_inference
from xraydenoise.weights import load_model


def test_padding_mirrors_where_it_can_and_repeats_the_edge_otherwise():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert pad_to(image, 3, 4) is image
    assert pad_to(image, 5, 4)[3:].tolist() == image[1::-1].tolist()  # reflect
    assert pad_to(np.ones((1, 1), np.float32), 4, 3).shape == (4, 3)  # edge: a 1x1 image


def test_pointwise_function_is_reproduced_exactly_by_tiling():
    rng = np.random.default_rng(0)
    image = rng.random((301, 257)).astype(np.float32)
    out = tile_inference(lambda x, m: x * 2.0, image, tile=64, margin=16)
    assert np.array_equal(out, image * 2.0)


def test_tiled_network_matches_whole_image_inference(tiny_weights, chest_image):
    torch.manual_seed(0)
    backend = TorchBackend(load_model(tiny_weights))
    image = np.ascontiguousarray(chest_image[:300, :260])
    whole = backend.run(image)
    for tile in (128, 131, 150):  # odd sizes too: windows stay on the network's pooling grid
        tiled = tile_inference(backend.run, image, tile=tile, margin=32, multiple=backend.multiple)
        assert np.abs(whole - tiled).max() < 1e-5, tile


def test_tile_must_leave_a_core_inside_two_margins():
    with pytest.raises(ValueError):
        tile_inference(lambda x, m: x, np.zeros((100, 100), np.float32), tile=32, margin=16)


def test_tile_size_follows_the_memory_budget():
    small = choose_tile_size(4096, 4096, memory_budget=400 * 1024**2)
    large = choose_tile_size(4096, 4096, memory_budget=2 * 1024**3)
    assert 512 <= small < large <= 2048
    assert choose_tile_size(300, 200, memory_budget=2 * 1024**3) == 300
