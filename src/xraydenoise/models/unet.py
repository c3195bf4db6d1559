"""The paper's network: a U-Net-style encoder-decoder with skip connections and residual blocks.

Amadi et al. (2024) describe conv + ReLU blocks with widening filters and max-pooling on the
way down, upsampling on the way up, skip connections between matching levels and residual
blocks. Two additions buy quality per FLOP on a CPU, both optional:

* ``pixel_unshuffle`` (FFDNet, Zhang et al. 2018): the image is folded into 4 half-resolution
  channels first, so every level costs a quarter as much at the same receptive field.
* residual output (DnCNN): the network predicts the noise and subtracts it from the input.

With ``noise_map=True`` the network takes the per-pixel noise standard deviation as an extra
input channel (FFDNet-style non-blind mode); without it the network is blind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResidualBlock, SizeAgnostic, conv3x3


class UNetCore(nn.Module):
    #: The convolution that reads the image (kept fp32 under bf16 autocast: blocks.Float32Input).
    input_layers = ("head.0",)

    def __init__(
        self,
        *,
        base_channels: int = 32,
        levels: int = 3,
        blocks_per_level: int = 1,
        pixel_unshuffle: bool = True,
        noise_map: bool = False,
        residual_output: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = 1
        self.uses_noise_map = noise_map
        self.unshuffle = 2 if pixel_unshuffle else 1
        self.residual_output = residual_output
        folded = self.unshuffle**2
        in_ch = folded + (1 if noise_map else 0)

        widths = [base_channels * 2**i for i in range(levels)]
        self.head = nn.Sequential(conv3x3(in_ch, widths[0]), nn.ReLU(inplace=True))
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for i, width in enumerate(widths):
            self.encoders.append(nn.Sequential(*[ResidualBlock(width) for _ in range(blocks_per_level)]))
            if i < levels - 1:
                # max-pool down (as in the paper), then widen the filters
                self.downs.append(nn.Sequential(nn.MaxPool2d(2), conv3x3(width, widths[i + 1]), nn.ReLU(inplace=True)))
        self.bottleneck = nn.Sequential(*[ResidualBlock(widths[-1]) for _ in range(blocks_per_level)])
        self.ups = nn.ModuleList()
        self.fuses = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in range(levels - 2, -1, -1):
            self.ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(widths[i + 1], widths[i]), nn.ReLU(inplace=True)))
            # skip connection: concatenate the encoder features of the same level
            self.fuses.append(nn.Sequential(nn.Conv2d(2 * widths[i], widths[i], 1), nn.ReLU(inplace=True)))
            self.decoders.append(nn.Sequential(*[ResidualBlock(widths[i]) for _ in range(blocks_per_level)]))
        self.tail = conv3x3(widths[0], folded)
        self.multiple = self.unshuffle * 2 ** (levels - 1)

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        h = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        if self.uses_noise_map:
            if noise_map is None:
                raise ValueError("this model needs a noise map")
            h = torch.cat([h, F.avg_pool2d(noise_map, self.unshuffle) if self.unshuffle > 1 else noise_map], dim=1)
        h = self.head(h)
        skips = []
        for i, encoder in enumerate(self.encoders):
            h = encoder(h)
            if i < len(self.downs):
                skips.append(h)
                h = self.downs[i](h)
        h = self.bottleneck(h)
        for up, fuse, decoder in zip(self.ups, self.fuses, self.decoders):
            h = up(h)
            h = fuse(torch.cat([h, skips.pop()], dim=1))
            h = decoder(h)
        out = self.tail(h)
        if self.unshuffle > 1:
            out = F.pixel_shuffle(out, self.unshuffle)
        return x - out if self.residual_output else out


def unet(**options) -> SizeAgnostic:
    core = UNetCore(**options)
    return SizeAgnostic(core, core.multiple)
