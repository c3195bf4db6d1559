"""ONNX export and the ONNX Runtime backend, including an environment without torch."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import require, run_cli

require("onnxruntime")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    result = run_cli("export", "--weights", tiny_weights, "-o", out)
    assert result.returncode == 0, result.stderr
    return out


def test_onnx_runtime_matches_pytorch_on_a_real_image_of_odd_size(tiny_weights, tiny_onnx, chest_image):
    from xraydenoise.denoisers import NetworkDenoiser

    image = np.ascontiguousarray(chest_image[100:301, 50:263])  # 201 x 213
    torch_out = NetworkDenoiser(tiny_weights, backend="torch")(image)  # fp32, not a bf16 pick
    onnx_out = NetworkDenoiser(tiny_onnx)(image)
    assert onnx_out.shape == image.shape
    assert np.abs(torch_out - onnx_out).max() < 1e-4


def test_cli_runs_onnx_where_torch_cannot_be_imported(tmp_path, tiny_onnx, chest_png):
    blocker = tmp_path / "blocker" / "torch"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('torch is blocked for this test')\n")
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])}
    probe = run_cli("methods", env=env)
    assert probe.returncode == 0
    result = run_cli("denoise", chest_png, "-o", tmp_path / "out", "--method", tiny_onnx, "--backend", "onnxruntime", env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / chest_png.name).exists()
    # The shipped network comes with its ONNX export: no torch needed, by default or when asked.
    shipped = run_cli("denoise", chest_png, "-o", tmp_path / "out2", "--method", "network", env=env)
    assert shipped.returncode == 0, shipped.stderr
    torch_asked = run_cli("denoise", chest_png, "-o", tmp_path / "out3", "--method", "network", "--backend", "torch", env=env)
    assert torch_asked.returncode == 2 and "torch is not installed" in torch_asked.stderr


def test_missing_onnx_runtime_is_a_one_line_error_that_says_how_to_install(tmp_path, tiny_onnx, chest_png):
    import os

    blocker = tmp_path / "blocker" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('onnxruntime is blocked for this test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("denoise", chest_png, "-o", tmp_path / "out", "--method", tiny_onnx, env=env)
    assert result.returncode == 2
    assert "pip install 'xraydenoise[onnx-runtime]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_the_shipped_onnx_export_is_of_the_shipped_weights_and_the_default_backend():
    import numpy as np

    from tests.conftest import CHEST
    from xraydenoise.denoisers import NetworkDenoiser, default_backend
    from xraydenoise.export import onnx_source_digest, weights_digest
    from xraydenoise.io import load_image
    from xraydenoise.weights import shipped_onnx, shipped_weights

    assert onnx_source_digest(shipped_onnx()) == weights_digest(shipped_weights()), \
        "re-export: xraydenoise export -o src/xraydenoise/pretrained/rdn-xray.onnx"
    assert default_backend() == "onnxruntime"
    image = load_image(CHEST).to_float()[:200, :300]
    onnx, torch_out = NetworkDenoiser(backend="onnxruntime")(image), NetworkDenoiser(backend="torch")(image)
    assert np.abs(onnx - torch_out).max() < 1e-5


@pytest.fixture(scope="module")
def tiny_routed(tmp_path_factory):
    """A small routed network: a blind white expert and a detector expert told the correlation."""
    import torch

    from xraydenoise.models import create_model
    from xraydenoise.weights import save_weights

    small = {"channels": 8, "blocks": 2, "layers_per_block": 2, "growth": 4}
    options = {"white": small, "correlated": dict(small, noise_map=True, correlation=True, noise_map_gain=10.0), "gate": [0.1, 0.3]}
    torch.manual_seed(0)
    model = create_model("routed", **options)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path_factory.mktemp("routed") / "routed.safetensors"
    save_weights(model, path, {"name": "routed", "architecture": "routed", "options": options, "blind": False})
    return path


@pytest.mark.parametrize("spec", ["10", "pg:0.01:3@exp:0.7"], ids=["white-noise", "correlated-noise"])
def test_a_routed_network_exports_with_branches_and_onnx_runtime_matches_pytorch(tiny_routed, chest_image, tmp_path, spec):
    import onnx

    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.noise import parse_noise

    out = tmp_path / "routed.onnx"
    result = run_cli("export", "--weights", tiny_routed, "-o", out)
    assert result.returncode == 0, result.stderr
    # Each expert sits in a branch of an If node, so ONNX Runtime runs only the one the noise picks.
    graph = onnx.load(str(out)).graph
    assert "If" in {node.op_type for node in graph.node}
    # ... and each branch holds its own convolution weights, so that ONNX Runtime's fast
    # (NCHWc) convolutions apply inside it: it skips a convolution whose weights come from outside.
    branch_convs = _branch_convolutions(graph)
    assert branch_convs and all(weight in local for weight, local in branch_convs)
    clean = np.ascontiguousarray(chest_image[200:377, 300:461])
    noisy = np.clip(parse_noise(spec).sample(clean, seed=1), 0, 1).astype(np.float32)
    torch_out = NetworkDenoiser(tiny_routed, backend="torch")(noisy)
    onnx_out = NetworkDenoiser(out)(noisy)
    assert onnx_out.shape == noisy.shape
    assert np.abs(torch_out - onnx_out).max() < 1e-4


def _branch_convolutions(graph, inside_branch=False):
    """(weight name, names of the graph's own initializers) for every Conv inside an If branch."""
    import onnx

    local = {initializer.name for initializer in graph.initializer}
    found = [(node.input[1], local) for node in graph.node if inside_branch and node.op_type == "Conv"]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += _branch_convolutions(attribute.g, inside_branch=True)
    return found


def test_a_routed_network_whose_card_changes_its_gate_is_a_new_network(tiny_routed, tmp_path, monkeypatch, chest_image):
    """The gate is in the model card, not in the weights: a changed gate must not reuse the old
    export (its gate is compiled into the graph), nor its derived DICOM UIDs."""
    import json
    import shutil

    from xraydenoise.batch import _method_label
    from xraydenoise.denoisers import NetworkDenoiser
    from xraydenoise.export import ensure_onnx, weights_digest
    from xraydenoise.noise import parse_noise

    monkeypatch.setenv("XRAYDENOISE_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "routed.safetensors"
    shutil.copy(tiny_routed, weights)
    shutil.copy(tiny_routed.with_suffix(".json"), weights.with_suffix(".json"))
    before = (weights_digest(weights), ensure_onnx(weights), _method_label(str(weights)))
    card = json.loads(weights.with_suffix(".json").read_text())
    card["options"]["gate"] = [0.6, 0.9]  # every noise now goes to the white expert
    weights.with_suffix(".json").write_text(json.dumps(card))
    after = (weights_digest(weights), ensure_onnx(weights), _method_label(str(weights)))
    assert all(b != a for b, a in zip(before, after))
    clean = np.ascontiguousarray(chest_image[200:377, 300:461])
    noisy = np.clip(parse_noise("pg:0.01:3@exp:0.7").sample(clean, seed=1), 0, 1).astype(np.float32)
    torch_out = NetworkDenoiser(weights, backend="torch")(noisy)
    assert np.abs(torch_out - NetworkDenoiser(after[1])(noisy)).max() < 1e-4
    assert np.abs(torch_out - NetworkDenoiser(before[1])(noisy)).max() > 1e-3  # the old export routes otherwise
