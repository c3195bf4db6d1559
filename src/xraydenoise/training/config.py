"""Typed training configuration, validated on load from YAML (CAREamics-style).

Each section is a pydantic model that checks types and ranges when a config is loaded, built,
copied with :meth:`replace` or assigned to, so a wrong value fails at once as one line naming
its key (``config.optim.lr: expected a number >= 0, got 'fast'``), not inside Lightning mid-run.
Types are strict: ``"16"`` is not a batch size, and ``true`` is not a count.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..io._text import read_text_file

# Value types with their ranges; the error messages are written from these annotations.
NonNegativeInt = Annotated[int, Ge(0)]
PositiveInt = Annotated[int, Ge(1)]
NonNegativeFloat = Annotated[float, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
UnitFloat = Annotated[float, Ge(0), Le(1)]  # [0, 1]


class _Section(BaseModel):
    """A config section: unknown keys, wrong types and out-of-range values raise ConfigError."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)
    _where: ClassVar[str] = "config"  # how error messages name the section

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc, type(self), values) from None

    def __setattr__(self, name: str, value: Any) -> None:
        old = self.__dict__.get(name, _MISSING)
        try:
            super().__setattr__(name, value)
        except BaseException as exc:
            if old is not _MISSING:  # a failed cross-field check leaves the section as it was
                self.__dict__[name] = old
            if isinstance(exc, ValidationError):
                raise _config_error(exc, type(self), {name: value}) from None
            raise

    @classmethod
    def _validated(cls, raw: Any):
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise _config_error(exc, cls, raw) from None

    def replace(self, **changes: Any):
        """A validated copy with ``changes`` (as :func:`dataclasses.replace`)."""
        return self._validated({**self.model_dump(), **changes})


_MISSING = object()


class ModelConfig(_Section):
    _where: ClassVar[str] = "config.model"

    name: str = "unet"
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Section):
    _where: ClassVar[str] = "config.data"

    root: str | None = None  # None: the XRAYDENOISE_DATA setting (dev set)
    split_seed: int = 0
    patch_size: Annotated[int, Ge(8)] = 128
    batch_size: PositiveInt = 16
    steps_per_epoch: PositiveInt = 200  # patches are drawn at random, so an "epoch" is a fixed step count
    exclude_institution: str | None = None  # leave-one-institution-out training
    val_crop: Annotated[int, Ge(16)] = 256
    val_images: NonNegativeInt = 0  # 0: every validation image
    train_images: NonNegativeInt = 0  # 0: every training image (a limit is for tests and quick runs)
    num_workers: NonNegativeInt = 0
    # Training images are also kept downscaled by these factors: radiographs reach users at many
    # pixel pitches (and the evaluation downscales to a 512 px long side), so the network sees
    # the anatomy at several scales, beyond the paper's +-20% zoom.
    scales: Annotated[list[Annotated[float, Gt(0), Le(1)]], MinLen(1)] = Field(default_factory=lambda: [1.0])
    # Share of training patches rotated and zoomed (the paper's augmentation); the rest are only
    # flipped, so the network also sees pixels as the detector recorded them, not resampled
    # (xraydenoise.data.augmentation.Augment). The paper, and the configs before it, used 1.
    affine_probability: UnitFloat = 0.5
    # Share of training crops with burned-in text, markers or metal painted on
    # (xraydenoise.data.overlays): shapes a radiograph has and random patches rarely hold.
    overlay_probability: UnitFloat = 0.0
    cache_size: NonNegativeInt = 0  # 0: keep every training image in memory (the dev set is ~200 MB as uint8)


class NoiseConfig(_Section):
    _where: ClassVar[str] = "config.noise"

    # Gaussian sigma drawn uniformly from [0, gaussian_max] on the [0,1] scale (55/255 = 0.2157).
    gaussian_max: NonNegativeFloat = 55 / 255
    # Poisson-Gaussian: gain a log-uniform in [a_min, a_max], electronic std s uniform in [0, s_max].
    p_poisson_gaussian: UnitFloat = 0.5
    a_min: float = 0.0005
    a_max: float = 0.03
    s_max: NonNegativeFloat = 10 / 255
    # Validation noise: Gaussian levels (x/255) and one Poisson-Gaussian setting, fixed seeds.
    val_sigmas: list[NonNegativeFloat] = Field(default_factory=lambda: [10.0, 25.0, 50.0])
    val_poisson_gaussian: list[float] = Field(default_factory=lambda: [0.01, 5.0])
    # Training noise as a weighted mix in the noise text syntax (xraydenoise.noise.spec), where
    # any number may be a range LO..HI (a drawn log-uniformly, the others uniformly), e.g.
    #   mix: [{weight: 0.25, noise: "g:0..55"}, {weight: 0.75, noise: "pg:0.0005..0.03:0..10@exp:0.3..1.5"}]
    # When given it replaces gaussian_max, p_poisson_gaussian, a_min, a_max and s_max.
    mix: list[dict[str, Any]] = Field(default_factory=list)
    # Validation noise in the noise text syntax, e.g. ["10", "25", "10@gauss:1", "pg:0.01:3@exp:0.7"];
    # when given it replaces val_sigmas and val_poisson_gaussian.
    val_levels: list[str] = Field(default_factory=list)
    # A network told the noise is told, in training, a condition as wrong as an estimate from
    # the image: the std off by a factor exp(N(0, told_std_error^2)), each correlation value by
    # N(0, told_correlation_error^2). 0 tells it the exact noise.
    told_std_error: NonNegativeFloat = 0.0
    told_correlation_error: NonNegativeFloat = 0.0
    # Tell it also the noise each training image already has (estimated once per image, as an
    # estimate in use reads it along with the added noise): told a clean image's own noise, it
    # learns to return the image unchanged (xraydenoise.training.datasets.inherent_noise).
    # "level": its std only; "all" (or true): its std and its correlation; false: neither.
    tell_inherent: bool | Literal["level", "all"] = False

    @field_validator("val_levels", mode="before")
    @classmethod
    def _levels_as_text(cls, value: Any) -> Any:
        # YAML reads `val_levels: [10, 25]` as numbers: they are Gaussian levels, as "10" and "25".
        if isinstance(value, list):
            return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check_noise(self) -> "NoiseConfig":
        self.to_mix()  # a malformed mix fails when the config is loaded, not at the first step
        self.validation_models()
        self.inherent_mode()
        return self

    def inherent_mode(self) -> str | None:
        """None, "level" or "all" (``tell_inherent``)."""
        value = self.tell_inherent
        if value is False or value is None:
            return None
        if value is True or value == "all":
            return "all"
        if value == "level":
            return "level"
        raise ConfigError(f"config.noise.tell_inherent: expected false, level or all, got {value!r}")

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
            if len(self.val_poisson_gaussian) != 2:
                raise ConfigError(f"config.noise.val_poisson_gaussian: expected [a, s] or [], got {self.val_poisson_gaussian!r}")
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


class OptimConfig(_Section):
    _where: ClassVar[str] = "config.optim"

    # 0 is allowed: it freezes the weights (tests train at lr 0 to prove init_weights loaded them).
    lr: NonNegativeFloat = 1e-3
    mse_weight: UnitFloat = 0.8  # loss = w * MSE + (1 - w) * (1 - SSIM)
    # Divide each patch's MSE by its noise variance (+ (1/255)^2): every noise level then counts
    # alike, instead of the loudest patches dominating the batch (a blind network otherwise
    # under-serves low noise). Both terms are then O(0.1), so w balances them directly.
    noise_balanced_mse: bool = False
    plateau_factor: Annotated[float, Gt(0), Lt(1)] = 0.1
    plateau_patience: NonNegativeInt = 5
    early_stopping_patience: NonNegativeInt = 10
    cosine: bool = False  # cosine decay over max_steps instead of reduce-on-plateau
    # The cosine's period in steps when it is not max_steps: a stage stopped early keeps the
    # schedule it was trained with, so its config reproduces it (None: max_steps).
    cosine_steps: PositiveInt | None = None
    # Clip the gradient norm: Adam at lr 1e-3 without it diverged once at step ~1000 on this data
    # (loss 0.003 -> 0.027); typical norms are 0.02-0.15, so 0.1 only cuts the spikes. 0 disables.
    gradient_clip: NonNegativeFloat = 0.1


class TrainConfig(_Section):
    _where: ClassVar[str] = "config"

    name: str = "unet"
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    seed: int = 0
    max_epochs: PositiveInt = 50
    max_steps: Annotated[int, Ge(-1)] = -1  # -1: no step limit (Lightning's convention)
    max_minutes: PositiveFloat | None = None  # wall-clock budget; training stops cleanly after it
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    channels_last: bool = True
    threads: PositiveInt | None = None  # CPU threads for torch; 1 is far faster when another job shares a 2-core machine
    accelerator: str = "auto"
    devices: int | list[int] | str = 1  # Lightning's devices: a count, device indices or "auto"
    strategy: str = "auto"
    output_dir: str = "runs/unet"
    # Start from these weights (safetensors + model card of the same architecture and options)
    # instead of a random initialisation: fine-tuning the shipped model on one's own data, or
    # continuing a finished run with a new schedule. Ignored when --resume finds a checkpoint.
    init_weights: str | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        return cls._validated(raw)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = packaged_config(path)
        text = read_text_file(path, "config file", error=ConfigError)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: cannot read config: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of options")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (config.json, the checkpoint's hyperparameters); from_dict reads it back."""
        return self.model_dump(mode="json")


def packaged_config(path: str | Path) -> Path:
    """``path`` itself when it exists, else the config of that name shipped in the package
    (``rdn-xray-blind`` or ``configs/rdn-xray-blind.yaml`` work from any folder)."""
    path = Path(path)
    if path.exists():
        return path
    from ..settings import PACKAGE_DIR

    shipped = PACKAGE_DIR / "configs" / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return shipped if shipped.is_file() else path


# --------------------------------------------------------------------------- error messages


def _config_error(exc: ValidationError, cls: type[_Section], raw: Any) -> ConfigError:
    """One line for the first problem: ``config.<section>.<key>: expected ..., got ...``, or
    ``config.<section>: unknown option(s) a, b``."""
    errors = exc.errors(include_url=False)
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = sorted({str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == parent})
        where, _, _ = _locate(cls, parent, raw)
        return ConfigError(f"{where}: unknown option(s) {', '.join(names)}")
    error = errors[0]
    where, annotation, value = _locate(cls, error["loc"], raw)
    if value is _MISSING:
        value = error["input"]
    return ConfigError(f"{where}: expected {_expected(annotation)}, got {_show(value)}")


def _locate(cls: type[_Section], loc: tuple, raw: Any) -> tuple[str, Any, Any]:
    """The dotted name of the key an error ``loc`` points into, its annotation and its raw value.

    Sections are walked into; the walk stops at the first plain field, so a bad list item or
    union member names the whole key (``config.data.scales``) with the value given for it.
    """
    annotation: Any
    where, annotation, value = cls._where, cls, raw
    model: type[_Section] | None = cls
    for part in loc:
        if model is None or part not in model.model_fields:
            break
        info = model.model_fields[part]
        where = f"{where}.{part}"
        args = (info.annotation, *info.metadata)
        annotation = Annotated[args] if info.metadata else info.annotation
        value = _item(value, part)
        model = info.annotation if isinstance(info.annotation, type) and issubclass(info.annotation, _Section) else None
    return where, annotation, value


def _item(container: Any, key: str) -> Any:
    if isinstance(container, dict):
        return container.get(key, _MISSING)
    if isinstance(container, BaseModel):
        return getattr(container, key, _MISSING)
    return _MISSING


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(annotation: Any) -> str:
    options = list(dict.fromkeys(_options(annotation)))
    return options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"


_PLURAL = {"an integer": "integers", "a number": "numbers", "a string": "strings", "a mapping": "mappings"}


def _options(annotation: Any, meta: tuple = ()) -> list[str]:
    """What ``annotation`` accepts, in words, one entry per alternative."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *more = get_args(annotation)
        return _options(base, (*meta, *more))
    if origin in (Union, types.UnionType):
        return [option for arg in get_args(annotation) for option in _options(arg)]
    if annotation is type(None):
        return ["null"]
    if origin is Literal:
        return [str(v).lower() if isinstance(v, bool) else str(v) for v in get_args(annotation)]
    if annotation is bool:
        return ["false", "true"]
    if annotation is int:
        return ["an integer" + _bounds(meta)]
    if annotation is float:
        return ["a number" + _bounds(meta)]
    if annotation is str:
        return ["a string"]
    if origin is list:
        item = _expected(get_args(annotation)[0]) if get_args(annotation) else "values"
        for singular, plural in _PLURAL.items():
            if item.startswith(singular):
                item = plural + item[len(singular):]
        non_empty = any(isinstance(m, MinLen) and m.min_length >= 1 for m in meta)
        return [f"a {'non-empty ' if non_empty else ''}list of {item}"]
    if origin is dict or annotation is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return ["a mapping"]
    return [str(annotation)]


def _bounds(meta: tuple) -> str:
    low = next(((">", m.gt) for m in meta if isinstance(m, Gt)), None) or next(((">=", m.ge) for m in meta if isinstance(m, Ge)), None)
    high = next((("<", m.lt) for m in meta if isinstance(m, Lt)), None) or next((("<=", m.le) for m in meta if isinstance(m, Le)), None)
    if low and high:
        return f" in {'(' if low[0] == '>' else '['}{low[1]}, {high[1]}{')' if high[0] == '<' else ']'}"
    pair = low or high
    if pair:
        op, bound = pair
        return f" {op} {bound}"
    return ""
