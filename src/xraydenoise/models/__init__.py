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


def receptive_radius(architecture: str, options: dict) -> int | None:
    """How far, in input pixels, an output pixel of the model can see (None: not known).

    Tiles overlap by this much, so tiled output equals whole-image output while no tile does
    more work than it must: a fixed margin of 128 px cost the shipped RDN (radius 55) 1.6x its
    whole-image time on a 1024 px image and 2.1x on a 4096 px one. Worked out from the
    options alone (no torch), so the ONNX Runtime backend knows it from the card an export
    carries; tests/unit/test_models.py checks each formula against a one-pixel probe.
    """
    try:
        if architecture == "routed":
            white, correlated = (receptive_radius("rdn", options[expert]) for expert in ("white", "correlated"))
            return None if white is None or correlated is None else max(white, correlated)
        if architecture == "dncnn":
            return int(options.get("depth", 17))  # 3x3 convolutions at full resolution
        fold = 2 if options.get("pixel_unshuffle", True) else 1
        if architecture == "rdn":
            # head, blocks x layers, the global 3x3 and the tail, each 3x3 at half resolution
            convs = 1 + int(options.get("blocks", 4)) * int(options.get("layers_per_block", 4)) + 2
            return fold * convs + fold - 1
        if architecture == "unet":
            levels, blocks = int(options.get("levels", 3)), int(options.get("blocks_per_level", 1))
            scales = [fold * 2**level for level in range(levels)]
            radius = fold  # head
            for level, scale in enumerate(scales):  # down: residual blocks, then max-pool and a conv
                radius += 2 * blocks * scale
                if level < levels - 1:
                    radius += scale + scales[level + 1]
            radius += 2 * blocks * scales[-1]  # bottleneck
            for scale in reversed(scales[:-1]):  # up: nearest upsampling's offset, a conv, blocks
                radius += scale + scale + 2 * blocks * scale
            return radius + fold + fold - 1  # tail, and the pixel-unshuffle's own extent
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return None


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
