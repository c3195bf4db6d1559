"""Building blocks shared by the model families."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(in_channels: int, out_channels: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class Float32Input(nn.Module):
    """Runs ``layer`` in fp32 under autocast and hands its output on in the autocast dtype.

    For the convolution that reads the image: bf16 keeps 8 significant bits, so autocast would
    round a pixel of 0.7 to a step of 1/256 before the network sees it, a quantization noise
    near that of a clean radiograph's own. A residual network reads that rounding as part of
    the image and keeps it, which cost the shipped RDN up to 0.08 dB against fp32; with its
    head in fp32 the difference stays within 0.01 dB (the backend probe's tolerance, held by
    ``tests/integration/test_shipped_model.py``), at the same speed.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device_type = x.device.type
        if not torch.is_autocast_enabled(device_type):
            return self.layer(x)
        with torch.autocast(device_type, enabled=False):
            return self.layer(x.float()).to(torch.get_autocast_dtype(device_type))


def keep_input_layers_fp32(model: nn.Module) -> nn.Module:
    """Wrap, in place, every layer that a model family names in its ``input_layers`` (the
    convolutions that read the image) in :class:`Float32Input`; returns ``model``."""
    for module in list(model.modules()):
        for name in getattr(module, "input_layers", ()):
            parent_name, _, attribute = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            layer = parent.get_submodule(attribute)
            if not isinstance(layer, Float32Input):
                setattr(parent, attribute, Float32Input(layer))
    return model


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity shortcut (He et al. 2016), as in the paper's U-Net."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


class SizeAgnostic(nn.Module):
    """Wraps a network that needs H and W to be multiples of ``multiple``.

    The input is padded (reflect where the image is large enough, replicate otherwise, so
    even a 1x1 image works) and the output cropped back, so every registered model accepts
    any height and width. ``core`` is what gets exported to ONNX: padding is done by the
    caller there, which keeps the exported graph free of data-dependent control flow.
    """

    def __init__(self, core: nn.Module, multiple: int) -> None:
        super().__init__()
        self.core = core
        self.multiple = multiple

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h = (-height) % self.multiple
        pad_w = (-width) % self.multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
            if noise_map is not None:  # padded like the image, as the ONNX Runtime caller pads both
                noise_map = F.pad(noise_map, (0, pad_w, 0, pad_h), mode=mode)
        out = self.core(x) if noise_map is None else self.core(x, noise_map)
        return out[..., :height, :width]

    # Convenience passthroughs so callers can ask the wrapper about the model.
    @property
    def in_channels(self) -> int:
        return self.core.in_channels  # type: ignore[return-value]  # nn.Module's __getattr__ is typed Tensor | Module

    @property
    def uses_noise_map(self) -> bool:
        return getattr(self.core, "uses_noise_map", False)

    @property
    def noise_channels(self) -> int:
        """Condition channels the network takes (0: blind; 1: std map; 3: std map + correlation)."""
        return getattr(self.core, "noise_channels", int(self.uses_noise_map))
