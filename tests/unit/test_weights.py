import json
import pickle

import pytest
import torch

from xraydenoise.errors import WeightsError
from xraydenoise.models import create_model
from xraydenoise.weights import load_model, read_card, save_weights


def test_round_trip_restores_identical_outputs(tmp_path, tiny_weights):
    model = load_model(tiny_weights)
    x = torch.rand(1, 1, 33, 47)
    path = save_weights(model, tmp_path / "copy.safetensors", model.card)
    again = load_model(path)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert read_card(path).architecture == "unet"


def test_half_precision_weights_load_as_float32(tmp_path, tiny_weights):
    model = load_model(tiny_weights)
    path = save_weights(model, tmp_path / "half.safetensors", model.card, half=True)
    assert path.stat().st_size < tiny_weights.stat().st_size
    again = load_model(path)
    assert all(p.dtype == torch.float32 for p in again.parameters())


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "dncnn.safetensors"
    save_weights(create_model("dncnn", depth=3, channels=4), path, {"architecture": "dncnn", "options": {"depth": 3, "channels": 4}})
    card = json.loads(path.with_suffix(".json").read_text())
    card.update(architecture="unet", options={"base_channels": 4, "levels": 2})
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="do not match"):
        load_model(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    path.with_suffix(".json").write_text(json.dumps({"architecture": "unet", "options": {}}))
    with pytest.raises(WeightsError, match="pickle"):
        load_model(path)
    assert not marker.exists()


def test_torch_save_archive_is_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, path)
    path.with_suffix(".json").write_text(json.dumps({"architecture": "unet", "options": {}}))
    with pytest.raises(WeightsError, match="safetensors"):
        load_model(path)


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all"])
def test_empty_or_corrupt_weights_give_weights_errors(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    path.with_suffix(".json").write_text(json.dumps({"architecture": "unet", "options": {}}))
    with pytest.raises(WeightsError):
        load_model(path)


def test_missing_card_is_a_clear_error(tmp_path, tiny_weights):
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(tiny_weights.read_bytes())
    with pytest.raises(WeightsError, match="model card"):
        load_model(lonely)


@pytest.mark.parametrize("change, message", [
    ({"options": ["channels", 8]}, "'options' must be a dict"),
    ({"options": {"base_channels": "4", "levels": 2}}, "bad options for model 'unet'"),
    ({"architecture": 7}, "'architecture' must be a str"),
    ({"parameters": True}, "'parameters' must be an int"),
    ({"training": "a lot"}, "'training' must be a dict"),
])
def test_a_card_of_the_wrong_shape_is_one_line(tmp_path, tiny_weights, change, message):
    path = tmp_path / "odd.safetensors"
    path.write_bytes(tiny_weights.read_bytes())
    card = json.loads(tiny_weights.with_suffix(".json").read_text())
    card.update(change)
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=message) as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_a_card_keeps_what_a_later_version_added(tmp_path, tiny_weights):
    card = read_card(tiny_weights).to_dict()
    card["calibration"] = {"detector": "XYZ-1", "kv": 70}
    path = tmp_path / "later.safetensors"
    path.write_bytes(tiny_weights.read_bytes())
    path.with_suffix(".json").write_text(json.dumps(card))
    model = load_model(path)
    save_weights(model, tmp_path / "again.safetensors", model.card)
    assert json.loads((tmp_path / "again.json").read_text())["calibration"] == {"detector": "XYZ-1", "kv": 70}


def test_committed_model_cards_carry_no_test_scores():
    """Test scores belong to the report's data (docs/results/data), not to the weights' cards."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cards = sorted((root / "src" / "xraydenoise" / "pretrained").glob("*.json")) + sorted((root / "trained").glob("*.json"))
    assert cards
    for path in cards:
        card = read_card(path.with_suffix(".safetensors"))
        assert "test" not in card.to_dict() and "test" not in json.loads(path.read_text()), path.name
