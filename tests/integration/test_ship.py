"""`xraydenoise ship`: a run folder packaged as shipped weights, and two experts as one routed network."""

from __future__ import annotations

import json

import numpy as np
import torch

from tests.conftest import run_cli
from xraydenoise.models import create_model
from xraydenoise.weights import load_model, save_weights

SMALL = {"channels": 8, "blocks": 2, "layers_per_block": 2, "growth": 4, "pixel_unshuffle": True}
TOLD = dict(SMALL, noise_map=True, correlation=True, noise_map_gain=10.0)


def _save(path, options, name, seed):
    torch.manual_seed(seed)
    model = create_model("rdn", **options)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    save_weights(model, path, {"name": name, "architecture": "rdn", "options": options, "blind": not options.get("noise_map"),
                               "training": {"steps": 10, "seconds": 1.0}, "config": f"configs/{name}.yaml",
                               "command": f"xraydenoise train --config configs/{name}.yaml"})
    return path


def test_two_experts_ship_as_one_routed_network_with_its_gate_and_both_cards(tmp_path):
    white = _save(tmp_path / "white.safetensors", SMALL, "white", 0)  # shipped weights of a blind white expert
    run = tmp_path / "run"
    run.mkdir()
    _save(run / "model.safetensors", TOLD, "detector", 1)  # a finished run of the detector expert
    result = run_cli("ship", run, "--name", "pair", "--white-expert", white, "--gate", "0.15,0.35",
                     "--config", "configs/detector.yaml", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    card = json.loads((tmp_path / "out" / "pair.json").read_text())
    assert card["architecture"] == "routed" and card["options"]["gate"] == [0.15, 0.35]
    assert set(card["experts"]) == {"white", "correlated"} and card["experts"]["white"]["name"] == "white"
    # the experts' weights are stored once, in the routed file's dtype: their cards do not say otherwise
    assert card["weights_dtype"] == "float16" and not any("weights_dtype" in expert for expert in card["experts"].values())
    assert card["training"]["total_steps"] == 20
    assert card["command"].startswith("xraydenoise train --config configs/white.yaml && xraydenoise train --config configs/detector.yaml")

    pair, white_model, detector = load_model(tmp_path / "out" / "pair.safetensors"), load_model(white), load_model(run / "model.safetensors")
    x = torch.rand(2, 1, 48, 40)
    std = torch.full_like(x, 0.04)
    condition = torch.cat([std, torch.cat([torch.full_like(x[:1], v) for v in (0.05, 0.6)]), torch.zeros_like(x)], dim=1)
    with torch.no_grad():
        out = pair(x, condition)
        # float16 in the shipped file: within a small fraction of a grey level of each expert
        assert np.abs((out[0] - white_model(x[:1])[0]).numpy()).max() < 2e-3  # lag-1 0.05 < 0.15: the white expert
        assert np.abs((out[1] - detector(x[1:], condition[1:])[0]).numpy()).max() < 2e-3  # 0.6 > 0.35: the detector expert

    bad = run_cli("ship", run, "--name", "x", "--white-expert", white, "--gate", "0.4", "--out", tmp_path / "bad")
    assert bad.returncode == 2 and "--gate must be two numbers" in bad.stderr and "Traceback" not in bad.stderr
    worse = run_cli("ship", run, "--name", "x", "--white-expert", white, "--gate", "0.5,0.2", "--out", tmp_path / "bad")
    assert worse.returncode == 2 and "gate" in worse.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def test_a_detector_expert_grown_from_the_white_expert_counts_their_shared_training_once(tmp_path):
    from xraydenoise.training.ship import _routed_totals

    white = tmp_path / "white.safetensors"
    white_training = {"total_steps": 39082, "total_seconds": 15909.2}
    grown = {"steps": 40, "seconds": 7.1, "total_steps": 39122, "total_seconds": 15916.3,
             "initialised_from": {"weights": str(white), "steps": 39082, "seconds": 15909.2}}
    assert _routed_totals(grown, white_training, white) == (39122, 15916.3)
    separate = {"steps": 40, "seconds": 7.1}  # trained from scratch: the two add up
    assert _routed_totals(separate, white_training, white) == (39122, 15916.3)
    other = dict(grown, initialised_from={"weights": str(tmp_path / "other.safetensors")})
    assert _routed_totals(other, white_training, white) == (39122 + 39082, round(15916.3 + 15909.2, 1))
    # both experts grown from one network (the shipped pair): that network's training counts once
    base = {"weights": str(tmp_path / "base.safetensors"), "steps": 39082, "seconds": 15909.2}
    white_grown = {"steps": 8000, "seconds": 3852.0, "total_steps": 47082, "total_seconds": 19761.2, "initialised_from": base}
    detector_grown = {"steps": 6000, "seconds": 2353.2, "total_steps": 45082, "total_seconds": 18262.4, "initialised_from": base}
    assert _routed_totals(detector_grown, white_grown, tmp_path / "white-run") == (39082 + 8000 + 6000, round(15909.2 + 3852.0 + 2353.2, 1))
    # the white expert fine-tuned once more (a second stage from its first run's weights, whose card
    # on disk says they grew from base): base's training still counts once
    first = tmp_path / "white-run" / "model.safetensors"
    _save(first, SMALL, "white", 2)
    card = json.loads(first.with_suffix(".json").read_text())
    card["training"] = white_grown
    first.with_suffix(".json").write_text(json.dumps(card))
    second = {"steps": 9000, "seconds": 2500.0, "total_steps": 56082, "total_seconds": 22261.2,
              "initialised_from": {"weights": str(first), "steps": 47082, "seconds": 19761.2}}
    assert _routed_totals(detector_grown, second, tmp_path / "white-run-2") == (39082 + 8000 + 9000 + 6000, round(15909.2 + 3852.0 + 2500.0 + 2353.2, 1))
