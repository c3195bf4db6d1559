"""Typed training configuration, validated on load from YAML (CAREamics-style)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "unet"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    root: str | None = None  # None: the XRAYDENOISE_DATA setting (dev set)
    split_seed: int = 0
    patch_size: int = 128
    batch_size: int = 16
    steps_per_epoch: int = 200  # patches are drawn at random, so an "epoch" is a fixed step count
    exclude_institution: str | None = None  # leave-one-institution-out training
    val_crop: int = 256
    val_images: int = 0  # 0: every validation image
    train_images: int = 0  # 0: every training image (a limit is for tests and quick runs)
    num_workers: int = 0
    # Training images are also kept downscaled by these factors: radiographs reach users at many
    # pixel pitches (and the evaluation downscales to a 512 px long side), so the network sees
    # the anatomy at several scales, beyond the paper's +-20% zoom.
    scales: list[float] = field(default_factory=lambda: [1.0])
    cache_size: int = 0  # 0: keep every training image in memory (the dev set is ~200 MB as uint8)


@dataclass
class NoiseConfig:
    # Gaussian sigma drawn uniformly from [0, gaussian_max] on the [0,1] scale (55/255 = 0.2157).
    gaussian_max: float = 55 / 255
    # Poisson-Gaussian: gain a log-uniform in [a_min, a_max], electronic std s uniform in [0, s_max].
    p_poisson_gaussian: float = 0.5
    a_min: float = 0.0005
    a_max: float = 0.03
    s_max: float = 10 / 255
    # Validation noise: Gaussian levels (x/255) and one Poisson-Gaussian setting, fixed seeds.
    val_sigmas: list[float] = field(default_factory=lambda: [10.0, 25.0, 50.0])
    val_poisson_gaussian: list[float] = field(default_factory=lambda: [0.01, 5.0])
    # Training noise as a weighted mix in the noise text syntax (xraydenoise.noise.spec), where
    # any number may be a range LO..HI (a drawn log-uniformly, the others uniformly), e.g.
    #   mix: [{weight: 0.25, noise: "g:0..55"}, {weight: 0.75, noise: "pg:0.0005..0.03:0..10@exp:0.3..1.5"}]
    # When given it replaces gaussian_max, p_poisson_gaussian, a_min, a_max and s_max.
    mix: list[dict[str, Any]] = field(default_factory=list)
    # Validation noise in the noise text syntax, e.g. ["10", "25", "10@gauss:1", "pg:0.01:3@exp:0.7"];
    # when given it replaces val_sigmas and val_poisson_gaussian.
    val_levels: list[str] = field(default_factory=list)
    # A network told the noise is told, in training, a condition as wrong as an estimate from
    # the image: the std off by a factor exp(N(0, told_std_error^2)), each correlation value by
    # N(0, told_correlation_error^2). 0 tells it the exact noise.
    told_std_error: float = 0.0
    told_correlation_error: float = 0.0
    # Tell it also the noise each training image already has (estimated once per image, as an
    # estimate in use reads it along with the added noise): told a clean image's own level, it
    # learns to return the image unchanged (xraydenoise.training.datasets.inherent_noise).
    tell_inherent: bool = False

    def __post_init__(self) -> None:
        self.to_mix()  # a malformed mix fails when the config is loaded, not at the first step
        self.validation_models()

    def validation_models(self) -> list:
        """The fixed noise models of the validation crops."""
        from ..noise import parse_noise

        if self.val_levels:
            try:
                return [parse_noise(str(level)) for level in self.val_levels]
            except ConfigError as exc:
                raise ConfigError(f"config.noise.val_levels: {exc}") from None
        models = [parse_noise(str(s)) for s in self.val_sigmas]
        if self.val_poisson_gaussian:
            a, s = self.val_poisson_gaussian
            models.append(parse_noise(f"pg:{a}:{s}"))
        return models

    def to_mix(self):
        """The training noise as a :class:`~xraydenoise.noise.NoiseMix` (one model drawn per patch).

        Without ``mix``: Gaussian with sigma uniform in [0, gaussian_max] (weight
        1 - p_poisson_gaussian), or Poisson-Gaussian with a log-uniform in [a_min, a_max] and s
        uniform in [0, s_max] (weight p_poisson_gaussian).
        """
        from ..noise import NoiseMix, NoiseRange

        if not self.mix:
            p = float(self.p_poisson_gaussian)
            if not 0 <= p <= 1:
                raise ConfigError(f"config.noise.p_poisson_gaussian: expected a probability, got {p!r}")
            if not 0 < self.a_min <= self.a_max:
                raise ConfigError("config.noise: expected 0 < a_min <= a_max")
            return NoiseMix(
                (NoiseRange("gaussian", s=(0.0, self.gaussian_max)), NoiseRange("pg", a=(self.a_min, self.a_max), s=(0.0, self.s_max))),
                (1.0 - p, p),
            )
        items = []
        for i, entry in enumerate(self.mix):
            if not isinstance(entry, dict) or set(entry) != {"weight", "noise"}:
                raise ConfigError(f"config.noise.mix[{i}]: expected a mapping with 'weight' and 'noise', got {entry!r}")
            items.append((entry["weight"], str(entry["noise"])))
        try:
            return NoiseMix.from_specs(items)
        except ConfigError as exc:
            raise ConfigError(f"config.noise.mix: {exc}") from None


@dataclass
class OptimConfig:
    lr: float = 1e-3
    mse_weight: float = 0.8  # loss = w * MSE + (1 - w) * (1 - SSIM)
    # Divide each patch's MSE by its noise variance (+ (1/255)^2): every noise level then counts
    # alike, instead of the loudest patches dominating the batch (a blind network otherwise
    # under-serves low noise). Both terms are then O(0.1), so w balances them directly.
    noise_balanced_mse: bool = False
    plateau_factor: float = 0.1
    plateau_patience: int = 5
    early_stopping_patience: int = 10
    cosine: bool = False  # cosine decay over max_steps instead of reduce-on-plateau
    # Clip the gradient norm: Adam at lr 1e-3 without it diverged once at step ~1000 on this data
    # (loss 0.003 -> 0.027); typical norms are 0.02-0.15, so 0.1 only cuts the spikes. 0 disables.
    gradient_clip: float = 0.1


@dataclass
class TrainConfig:
    name: str = "unet"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    max_epochs: int = 50
    max_steps: int = -1
    max_minutes: float | None = None  # wall-clock budget; training stops cleanly after it
    precision: str = "auto"  # auto | bf16 | fp32
    channels_last: bool = True
    threads: int | None = None  # CPU threads for torch; 1 is far faster when another job shares a 2-core machine
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    output_dir: str = "runs/unet"
    # Start from these weights (safetensors + model card of the same architecture and options)
    # instead of a random initialisation: fine-tuning the shipped model on one's own data, or
    # continuing a finished run with a new schedule. Ignored when --resume finds a checkpoint.
    init_weights: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        return _build(cls, raw, "config")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = packaged_config(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of options")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def packaged_config(path: str | Path) -> Path:
    """``path`` itself when it exists, else the config of that name shipped in the package
    (``rdn-xray-blind`` or ``configs/rdn-xray-blind.yaml`` work from any folder)."""
    path = Path(path)
    if path.exists():
        return path
    from ..settings import PACKAGE_DIR

    shipped = PACKAGE_DIR / "configs" / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return shipped if shipped.is_file() else path


def _build(cls, raw: dict[str, Any], where: str):
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
    values = {}
    for name, value in raw.items():
        default = cls.__dataclass_fields__[name].default_factory if known[name].default_factory is not dataclasses.MISSING else None
        nested = default() if default is not None else None
        if dataclasses.is_dataclass(nested):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name}: expected a mapping")
            values[name] = _build(type(nested), value, f"{where}.{name}")
        else:
            values[name] = value
    obj = cls(**values)
    if isinstance(obj, TrainConfig) and obj.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"{where}.precision: expected auto, bf16 or fp32, got {obj.precision!r}")
    return obj
