"""ResNet-style rival: DnCNN (Zhang et al. 2017), residual learning of the noise.

A plain stack of conv + BN + ReLU layers that predicts the noise; the clean estimate is the
input minus that prediction (one global residual connection, the ResNet idea applied to
denoising). It has no down-sampling, so it costs the most per pixel at full resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import SizeAgnostic, conv3x3


class DnCNNCore(nn.Module):
    #: The convolution that reads the image (kept fp32 under bf16 autocast: blocks.Float32Input).
    input_layers = ("body.0",)

    def __init__(self, *, depth: int = 17, channels: int = 64, noise_map: bool = False, batch_norm: bool = True) -> None:
        super().__init__()
        self.in_channels = 1
        self.uses_noise_map = noise_map
        layers: list[nn.Module] = [conv3x3(1 + int(noise_map), channels), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(conv3x3(channels, channels, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.ReLU(inplace=True))
        layers.append(conv3x3(channels, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        h = x
        if self.uses_noise_map:
            assert noise_map is not None, "this network is told the noise: pass noise_map"
            h = torch.cat([x, noise_map], dim=1)
        return x - self.body(h)


def dncnn(**options) -> SizeAgnostic:
    return SizeAgnostic(DnCNNCore(**options), 1)
