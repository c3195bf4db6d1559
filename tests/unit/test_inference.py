import numpy as np
import pytest
import torch

from tests.conftest import require
from xraydenoise.inference import BYTES_PER_PIXEL, DEFAULT_MARGIN, TorchBackend, choose_tile_size, choose_tiles, pad_to, tile_inference
from xraydenoise.models import receptive_radius
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


@pytest.mark.parametrize("height, width", [(1024, 1024), (2500, 2048), (4096, 4096), (3000, 700), (6000, 150), (1100, 5000)])
@pytest.mark.parametrize("budget_mib", [200, 512])
def test_automatic_tiles_fit_the_budget_and_compute_no_more_than_square_tiles(height, width, budget_mib):
    """The chosen (height, width) tiles: every window within the memory budget, and no more
    pixels computed than square tiles of the same budget (their seams cost 2 margins each)."""
    margin, multiple, budget = 56, 2, budget_mib * 1024**2
    tile = choose_tiles(height, width, margin=margin, multiple=multiple, memory_budget=budget)
    windows = []
    tile_inference(lambda window, _: windows.append(window.shape) or window, np.zeros((height, width), np.float32),
                   tile=tile, margin=margin, multiple=multiple)
    assert max(h * w for h, w in windows) <= budget // BYTES_PER_PIXEL
    square = []
    side = choose_tile_size(height, width, memory_budget=budget)
    tile_inference(lambda window, _: square.append(window.shape) or window, np.zeros((height, width), np.float32),
                   tile=side, margin=margin, multiple=multiple)
    assert sum(h * w for h, w in windows) <= sum(h * w for h, w in square)


def test_a_1024_image_is_cut_into_two_strips_not_four_squares():
    tile = choose_tiles(1024, 1024, margin=55, multiple=2, memory_budget=512 * 1024**2)
    assert sorted(tile)[1] >= 1024 and sorted(tile)[0] < 1024


def test_a_backend_that_needs_fewer_bytes_per_pixel_runs_a_1024_image_whole():
    budget = TorchBackend.tile_memory_budget
    assert choose_tiles(1024, 1024, margin=55, multiple=2, bytes_per_pixel=TorchBackend.FP32_BYTES_PER_PIXEL,
                        memory_budget=budget) != (1024, 1024)
    assert choose_tiles(1024, 1024, margin=55, multiple=2, bytes_per_pixel=TorchBackend.BF16_BYTES_PER_PIXEL,
                        memory_budget=budget) == (1024, 1024)


@pytest.fixture(scope="module")
def told_weights(tmp_path_factory):
    """A small RDN told the noise (std map + correlation), random weights, saved like a real model."""
    from xraydenoise.models import create_model
    from xraydenoise.weights import save_weights

    torch.manual_seed(0)
    options = {"channels": 8, "blocks": 2, "layers_per_block": 2, "growth": 4, "noise_map": True, "correlation": True, "noise_map_gain": 10.0}
    path = tmp_path_factory.mktemp("told") / "told.safetensors"
    save_weights(create_model("rdn", **options), path, {"name": "told", "architecture": "rdn", "options": options})
    return path


def test_a_network_told_the_noise_is_tiled_exactly_and_reads_what_it_is_told(told_weights, chest_image):
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.noise import parse_noise

    image = parse_noise("10@gauss:1").sample(np.ascontiguousarray(chest_image[:300, :260]), seed=0)
    network = NetworkDenoiser(told_weights, backend="torch")
    assert network.noise_channels == 3
    condition = network.condition(image, parse_noise("10@gauss:1"))
    assert condition.shape == (3, 300, 260)
    whole = network.backend.run(image, condition)
    for tile in (128, 131):
        tiled = tile_inference(network.backend.run, image, noise_map=condition, tile=tile, margin=32, multiple=network.backend.multiple)
        assert np.abs(whole - tiled).max() < 1e-5, tile
    # The condition made window by window (what __call__ does) is the condition sliced.
    lazy = network.condition_for(image, parse_noise("10@gauss:1"))
    tiled_lazy = tile_inference(network.backend.run, image, noise_map=lazy, tile=131, margin=32, multiple=network.backend.multiple)
    assert np.abs(whole - tiled_lazy).max() < 1e-5
    # Told another noise, it does something else; told nothing, it estimates the noise itself.
    assert np.abs(network(image, parse_noise("10")) - network(image, parse_noise("10@gauss:1"))).max() > 1e-4
    assert np.abs(network(image) - network(image, parse_noise("10@gauss:1"))).max() < np.abs(network(image, parse_noise("30")) - network(image)).max()


def test_onnx_export_of_a_network_told_the_noise_matches_torch(told_weights, chest_image, tmp_path):
    require("onnxruntime")
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.export import export_onnx
    from xraydenoise.noise import parse_noise

    onnx_path = export_onnx(told_weights, tmp_path / "told.onnx")
    image = parse_noise("pg:0.01:3@exp:0.7").sample(np.ascontiguousarray(chest_image[:97, :131]), seed=0)
    torch_out = NetworkDenoiser(told_weights, backend="torch")(image)
    onnx_net = NetworkDenoiser(onnx_path)
    assert onnx_net.noise_channels == 3
    assert np.abs(onnx_net(image) - torch_out).max() < 1e-4


@pytest.mark.parametrize("key, value, message", [("multiple", "two", "'multiple' must be an integer"), ("multiple", "0", "'multiple' must be an integer"),
                                                 ("noise_map", "maybe", "'noise_map' must be true or false"),
                                                 ("noise_channels", "2", "'noise_channels' must be 0")])
def test_onnx_metadata_of_the_wrong_kind_is_one_line(told_weights, tmp_path, key, value, message):
    onnx = require("onnx")
    require("onnxruntime")
    from xraydenoise.errors import WeightsError
    from xraydenoise.export import export_onnx
    from xraydenoise.inference import OnnxBackend

    path = export_onnx(told_weights, tmp_path / "told.onnx")
    proto = onnx.load(path)
    for entry in proto.metadata_props:
        if entry.key == key:
            entry.value = value
    onnx.save(proto, path)
    with pytest.raises(WeightsError, match=message) as info:
        OnnxBackend(path)
    assert "\n" not in str(info.value)


def test_the_default_margin_is_the_networks_receptive_radius_and_tiles_still_match_the_whole_image(told_weights, chest_image):
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.noise import parse_noise

    image = parse_noise("10@gauss:1").sample(np.ascontiguousarray(chest_image[:300, :260]), seed=0)
    whole = NetworkDenoiser(told_weights, backend="torch")
    assert whole.margin == receptive_radius("rdn", whole.card.options) < DEFAULT_MARGIN
    tiled = NetworkDenoiser(told_weights, backend="torch", tile=2 * whole.margin + 8)
    assert tiled.margin == whole.margin
    assert np.abs(whole(image, parse_noise("10@gauss:1")) - tiled(image, parse_noise("10@gauss:1"))).max() < 1e-5
    # With a third of that context the tiles do differ (test_models checks the radius is tight).
    narrow = NetworkDenoiser(told_weights, backend="torch", tile=2 * whole.margin + 8, margin=whole.margin // 3)
    assert np.abs(whole(image, parse_noise("10@gauss:1")) - narrow(image, parse_noise("10@gauss:1"))).max() > 1e-5


def test_each_backend_sizes_its_automatic_tiles_to_its_own_memory_budget(told_weights):
    """PyTorch's runtime takes more memory than ONNX Runtime's, so its tiles get less: a 4096 px
    radiograph stays under 1 GiB whichever backend the default path picked (make bench)."""
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.inference import TILE_MEMORY_BUDGET, OnnxBackend, _available_memory

    network = NetworkDenoiser(told_weights, backend="torch")
    assert TorchBackend.tile_memory_budget < OnnxBackend.tile_memory_budget == TILE_MEMORY_BUDGET
    budget = min(TorchBackend.tile_memory_budget, _available_memory() // 4)
    tile = network.auto_tile(4096, 4096)
    assert tile == choose_tiles(4096, 4096, margin=network.margin, multiple=network.backend.multiple,
                                bytes_per_pixel=TorchBackend.FP32_BYTES_PER_PIXEL, memory_budget=budget)
    if _available_memory() // 4 >= TILE_MEMORY_BUDGET:  # where free memory does not set the size anyway
        onnx_tile = choose_tiles(4096, 4096, margin=network.margin, multiple=network.backend.multiple)
        assert tile[0] * tile[1] * TorchBackend.FP32_BYTES_PER_PIXEL < onnx_tile[0] * onnx_tile[1] * BYTES_PER_PIXEL
    assert network.auto_tile(300, 200) == (300, 200)  # a small image is run whole


def test_the_self_ensemble_runs_on_a_non_square_image_with_automatic_tiles(told_weights):
    """The rotated copies are W x H: automatic tiles chosen for H x W (a whole-image tile)
    must not be reused for them (that once cut a 77 x 96 image into impossible tiles)."""
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.noise import parse_noise

    image = np.clip(parse_noise("10").sample(np.full((77, 96), 0.5, np.float32), seed=0), 0, 1).astype(np.float32)
    out = NetworkDenoiser(told_weights, backend="torch", ensemble=True, margin=40)(image)
    assert out.shape == image.shape and np.isfinite(out).all()


def test_the_torch_cpu_backend_reuses_freed_memory_instead_of_faulting_it_in_for_every_image():
    # In a fresh process each: glibc hands every block over 32 MiB back on free, so each image
    # faulted its feature maps in again, page by page; XRAYDENOISE_MALLOC=system keeps that.
    import os
    import subprocess
    import sys

    code = (
        "import resource, numpy as np, torch\n"
        "from xraydenoise.inference import TorchBackend\n"
        "from xraydenoise.models import create_model\n"
        "torch.manual_seed(0)\n"
        "backend = TorchBackend(create_model('rdn', channels=32, blocks=1))\n"
        "image = np.random.default_rng(0).random((512, 1024), dtype=np.float32)\n"
        "backend.run(image)\n"
        "backend.run(image)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "backend.run(image)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {}
    for setting in ("", "system"):
        env = {**os.environ, "XRAYDENOISE_MALLOC": setting}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
        faults[setting] = int(done.stdout.split()[-1])
    assert faults["system"] > 5000, faults  # the cost this removes is there to remove
    assert faults[""] < faults["system"] / 10, faults


def test_what_one_shape_freed_goes_back_to_the_system_when_the_shape_changes():
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from pathlib import Path\n"
        "from xraydenoise.inference import TorchBackend\n"
        "from xraydenoise.models import create_model\n"
        "def rss():\n"
        "    line = [l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS:')][0]\n"
        "    return int(line.split()[1]) * 1024\n"
        "backend = TorchBackend(create_model('rdn', channels=32, blocks=1))\n"
        "rng = np.random.default_rng(0)\n"
        "backend.run(rng.random((512, 1024), dtype=np.float32))\n"
        "backend.run(rng.random((512, 1024), dtype=np.float32))\n"
        "kept = rss()\n"
        "backend.run(rng.random((64, 64), dtype=np.float32))\n"
        "print(kept - rss())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert int(done.stdout.split()[-1]) > 100 * 2**20  # the 512x1024 feature maps, handed back
