"""The training config: typed and range-checked on load, every problem one line naming its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xraydenoise.errors import ConfigError
from xraydenoise.training.config import DataConfig, ModelConfig, NoiseConfig, OptimConfig, TrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "src" / "xraydenoise" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_round_trips(path: Path) -> None:
    cfg = TrainConfig.from_yaml(path)
    as_json = json.loads(json.dumps(cfg.to_dict()))  # what config.json holds
    assert TrainConfig.from_dict(as_json) == cfg
    cfg.noise.to_mix()
    assert cfg.noise.validation_models()


def test_shipped_configs_are_found() -> None:
    assert len(CONFIGS) >= 10
    assert TrainConfig.from_yaml("rdn-xray-blind") == TrainConfig.from_yaml(CONFIGS[0].parent / "rdn-xray-blind.yaml")


def test_defaults_round_trip_and_keep_their_values() -> None:
    cfg = TrainConfig()
    assert TrainConfig.from_dict({}) == cfg == TrainConfig.from_dict(cfg.to_dict())
    assert (cfg.data.patch_size, cfg.data.batch_size, cfg.optim.lr, cfg.max_steps, cfg.precision) == (128, 16, 1e-3, -1, "auto")
    assert cfg.noise.inherent_mode() is None and cfg.data.scales == [1.0]
    assert TrainConfig().data.scales is not cfg.data.scales  # no shared mutable defaults


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"max_steps": "lots"}, "config.max_steps: expected an integer >= -1, got 'lots'"),
        ({"optim": {"lr": "fast"}}, "config.optim.lr: expected a number >= 0, got 'fast'"),
        ({"data": {"batch_size": "16"}}, "config.data.batch_size: expected an integer >= 1, got '16'"),
        ({"data": {"patch_size": -3}}, "config.data.patch_size: expected an integer >= 8, got -3"),
        ({"data": {"patch_size": 64.0}}, "config.data.patch_size: expected an integer >= 8, got 64.0"),
        ({"optim": {"mse_weight": 1.5}}, "config.optim.mse_weight: expected a number in [0, 1], got 1.5"),
        ({"optim": {"plateau_factor": 1}}, "config.optim.plateau_factor: expected a number in (0, 1), got 1"),
        ({"optim": {"cosine_steps": 0}}, "config.optim.cosine_steps: expected an integer >= 1 or null, got 0"),
        ({"precision": "fp8"}, "config.precision: expected auto, bf16 or fp32, got 'fp8'"),
        ({"noise": {"tell_inherent": "sometimes"}}, "config.noise.tell_inherent: expected false, true, level or all, got 'sometimes'"),
        ({"noise": {"mix": [{"weight": 1}]}}, "config.noise.mix[0]: expected a mapping with 'weight' and 'noise', got {'weight': 1}"),
        ({"noise": {"mix": ["10"]}}, "config.noise.mix: expected a list of mappings, got ['10']"),
        ({"noise": {"p_poisson_gaussian": 2}}, "config.noise.p_poisson_gaussian: expected a number in [0, 1], got 2"),
        ({"noise": {"a_min": 0.1, "a_max": 0.01}}, "config.noise: expected 0 < a_min <= a_max"),
        ({"noise": {"val_poisson_gaussian": [0.01]}}, "config.noise.val_poisson_gaussian: expected [a, s] or [], got [0.01]"),
        ({"data": {"scales": [1.0, 1.5]}}, "config.data.scales: expected a non-empty list of numbers in (0, 1], got [1.0, 1.5]"),
        ({"threads": True}, "config.threads: expected an integer >= 1 or null, got True"),
        ({"max_minutes": 0}, "config.max_minutes: expected a number > 0 or null, got 0"),
        ({"max_minutes": float("nan")}, "config.max_minutes: expected a number > 0 or null, got nan"),
        ({"channels_last": "yes"}, "config.channels_last: expected false or true, got 'yes'"),
        ({"learning_rate": 3, "epochs": 2}, "config: unknown option(s) epochs, learning_rate"),
        ({"data": {"batchsize": 4}}, "config.data: unknown option(s) batchsize"),
        ({"data": [16, 128]}, "config.data: expected a mapping, got [16, 128]"),
        ({"model": {"options": ["channels"]}}, "config.model.options: expected a mapping, got ['channels']"),
    ],
)
def test_a_bad_value_is_one_line_naming_its_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(raw)
    assert str(info.value) == message


def test_a_config_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"^config: expected a mapping, got \[1, 2\]$"):
        TrainConfig.from_dict([1, 2])


def test_yaml_problems_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")
    listed = tmp_path / "listed.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="a config must be a mapping of options"):
        TrainConfig.from_yaml(listed)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {patch_size: [\n")
    with pytest.raises(ConfigError, match="cannot read config"):
        TrainConfig.from_yaml(broken)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batch_size: '16'\n")
    with pytest.raises(ConfigError, match=r"^config\.data\.batch_size: expected an integer >= 1, got '16'$"):
        TrainConfig.from_yaml(bad)


def test_yaml_numbers_are_accepted_where_they_are_meant() -> None:
    cfg = TrainConfig.from_dict({"max_minutes": 45, "noise": {"val_levels": [10, "pg:0.01:5"]}, "optim": {"lr": 0}})
    assert cfg.max_minutes == 45.0 and isinstance(cfg.max_minutes, float)
    assert cfg.noise.val_levels == ["10", "pg:0.01:5"] and cfg.optim.lr == 0.0
    assert TrainConfig.from_dict({"devices": [0, 1]}).devices == [0, 1]
    assert TrainConfig.from_dict({"devices": "auto"}).devices == "auto"
    assert [TrainConfig.from_dict({"noise": {"tell_inherent": v}}).noise.inherent_mode() for v in (False, True, "level", "all")] == [
        None, "all", "level", "all"]


def test_replace_returns_a_validated_copy() -> None:
    cfg = TrainConfig.from_yaml("rdn-xray-blind")
    quick = cfg.replace(max_steps=4, data=cfg.data.replace(batch_size=4, patch_size=32))
    assert (quick.max_steps, quick.data.batch_size, quick.data.patch_size) == (4, 4, 32)
    assert quick.data.scales == cfg.data.scales and quick.noise == cfg.noise and quick.model == cfg.model
    assert (cfg.max_steps, cfg.data.batch_size) != (4, 4)  # the original is untouched
    quick.optim.lr = 0.5
    assert cfg.optim.lr != 0.5  # and shares no section with the copy
    with pytest.raises(ConfigError, match=r"^config\.max_steps: expected an integer >= -1, got '9'$"):
        cfg.replace(max_steps="9")
    with pytest.raises(ConfigError, match=r"^config\.data\.batch_size: expected an integer >= 1, got 0$"):
        cfg.data.replace(batch_size=0)
    with pytest.raises(ConfigError, match=r"^config: unknown option\(s\) learning_rate$"):
        cfg.replace(learning_rate=1e-3)
    with pytest.raises(ConfigError, match=r"^config\.noise\.mix\[0\]"):
        cfg.noise.replace(mix=[{"noise": "10"}])


def test_sections_built_in_code_and_assignment_are_validated() -> None:
    """As train.folder_config builds one and then sets the fine-tuning learning rate."""
    cfg = TrainConfig(name="mine", model=ModelConfig(name="rdn", options={"channels": 32}), data=DataConfig(root="/data"),
                      output_dir="runs/mine", max_minutes=30.0, init_weights="w.safetensors")
    cfg.optim.lr = 1e-4
    assert cfg.optim.lr == 1e-4 and TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"^config\.optim\.lr: expected a number >= 0, got 'fast'$"):
        cfg.optim.lr = "fast"
    assert cfg.optim.lr == 1e-4
    with pytest.raises(ConfigError, match=r"^config\.noise\.mix\[0\]"):
        cfg.noise.mix = [{"weight": 1}]
    assert cfg.noise.mix == [] and cfg.noise.to_mix()  # a failed cross-field check changes nothing
    with pytest.raises(ConfigError, match=r"^config\.data\.patch_size: expected an integer >= 8, got 4$"):
        DataConfig(patch_size=4)
    with pytest.raises(ConfigError, match=r"^config\.optim: unknown option\(s\) momentum$"):
        OptimConfig(momentum=0.9)
    with pytest.raises(ConfigError, match=r"^config\.noise\.val_levels: "):
        NoiseConfig(val_levels=["loud"])
