"""Model registry: ``create_model(name, **options)`` over one file per family (timm-style)."""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError

# Imported lazily so `import xraydenoise.models` costs nothing until a model is built.
_REGISTRY: dict[str, str] = {
    "unet": "xraydenoise.models.unet:unet",
    "dncnn": "xraydenoise.models.dncnn:dncnn",
    "rdn": "xraydenoise.models.rdn:rdn",
    "routed": "xraydenoise.models.routed:routed",
}

#: Which family of the paper's comparison each model stands for.
FAMILY = {"unet": "U-Net (paper)", "dncnn": "ResNet-style (DnCNN)", "rdn": "DenseNet-style (RDN)",
          "routed": "two DenseNet-style (RDN) experts routed by the noise"}


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def _family(name: str):
    """The module of one model family (its file), imported on first use."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    import importlib

    return importlib.import_module(_REGISTRY[name].split(":")[0])


def _factory(name: str) -> Callable:
    return getattr(_family(name), _REGISTRY[name].split(":")[1])


def create_model(name: str, **options):
    """Build a registered model. Every model maps (B,1,H,W) in [0,1] to (B,1,H,W), any H and W."""
    try:
        return _factory(name)(**options)
    except TypeError as exc:  # unknown option names from a config file
        raise ConfigError(f"bad options for model {name!r}: {exc}") from None


def grow_state(name: str, old_state: dict, new_state: dict, old_options: dict, new_options: dict) -> dict:
    """Weights of a trained ``name`` model mapped into a larger one that computes the same output.

    ``new_state`` is the larger model's freshly initialised state. Families that can grow define
    ``grow_state`` in their file; for the others this is a one-line ConfigError.
    """
    module = _family(name)
    if not hasattr(module, "grow_state"):
        raise ConfigError(f"model {name!r} cannot start from weights with other options ({old_options} -> {new_options})")
    return module.grow_state(old_state, new_state, old_options, new_options)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
