"""``evaluate --levels`` parsing and the training config's noise mix."""

from __future__ import annotations

import pytest
import torch

from xraydenoise.errors import ConfigError
from xraydenoise.evaluation.runner import parse_levels
from xraydenoise.noise import CorrelatedNoise, GaussianNoise, PoissonGaussianNoise
from xraydenoise.training.config import NoiseConfig, TrainConfig


def test_default_and_quality_target_levels() -> None:
    assert [m.label for m in parse_levels("10,25,50,pg:0.01:5")] == [
        "gaussian-10",
        "gaussian-25",
        "gaussian-50",
        "poisson-gaussian-a0.01-s5",
    ]
    target = parse_levels("10@gauss:1.0, 25@gauss:1.0, pg:0.01:3@exp:0.7")
    assert all(isinstance(m, CorrelatedNoise) for m in target)
    assert [str(m) for m in target] == ["10@gauss:1", "25@gauss:1", "pg:0.01:3@exp:0.7"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no noise level"),
        ("10,,25", "empty item"),
        ("10,gaussian:10", "same noise"),
        ("10,25@blur:1", "unknown detector kernel"),
        ("10,nan", "expected a Gaussian sigma"),
        ("10,-5@gauss:1", ">= 0"),
    ],
)
def test_bad_levels(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_levels(text)
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_legacy_noise_config_draws_the_same_distribution_as_before() -> None:
    """Gaussian sigma uniform in [0, gaussian_max] or Poisson-Gaussian with probability p,
    a log-uniform in [a_min, a_max], s uniform in [0, s_max]: the distribution the training
    code drew before the shared models."""
    cfg = NoiseConfig()
    mix = cfg.to_mix()
    generator = torch.Generator().manual_seed(0)
    models = [mix.draw(generator) for _ in range(4000)]
    pg = [m for m in models if isinstance(m, PoissonGaussianNoise)]
    gauss = [m for m in models if isinstance(m, GaussianNoise)]
    assert len(pg) + len(gauss) == len(models)
    assert len(pg) / len(models) == pytest.approx(cfg.p_poisson_gaussian, abs=0.03)
    sigmas = torch.tensor([m.sigma for m in gauss])
    assert float(sigmas.max()) <= cfg.gaussian_max and float(sigmas.mean()) == pytest.approx(cfg.gaussian_max / 2, rel=0.05)
    log_a = torch.tensor([m.a for m in pg]).log()
    assert float(log_a.mean()) == pytest.approx((torch.tensor(cfg.a_min).log() + torch.tensor(cfg.a_max).log()).item() / 2, abs=0.1)
    s = torch.tensor([m.s for m in pg])
    assert float(s.max()) <= cfg.s_max and float(s.mean()) == pytest.approx(cfg.s_max / 2, rel=0.07)


def test_config_noise_mix_key() -> None:
    cfg = TrainConfig.from_dict(
        {"noise": {"mix": [{"weight": 0.25, "noise": "g:0..55"}, {"weight": 0.75, "noise": "pg:0.0005..0.03:0..10@exp:0.3..1.5"}]}}
    )
    mix = cfg.noise.to_mix()
    assert mix.weights == (0.25, 0.75) and mix.entries[1].family == "exp"
    clean = torch.full((4, 1, 24, 24), 0.5)
    noisy, std = mix.sample_torch(clean, torch.Generator().manual_seed(0))
    assert noisy.shape == std.shape == clean.shape
    for bad in ([{"weight": 1, "noise": "g:0..55@blur:1"}], [{"weight": 1}], [{"weight": -1, "noise": "10"}], ["10"]):
        with pytest.raises(ConfigError) as info:
            TrainConfig.from_dict({"noise": {"mix": bad}})
        assert str(info.value).startswith("config.noise.mix") and "\n" not in str(info.value)
