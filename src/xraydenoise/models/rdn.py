"""DenseNet-style rival: a residual dense network (RDN, Zhang et al. 2018) for denoising.

Each residual dense block concatenates the outputs of all its previous layers (DenseNet
connectivity), fuses them with a 1x1 convolution and adds the block input (local residual).
The outputs of all blocks are fused again (global feature fusion) and the network predicts
the noise, as the other two families do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .blocks import SizeAgnostic, conv3x3


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.conv = conv3x3(in_channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.relu(self.conv(x), inplace=True)], dim=1)


class ResidualDenseBlock(nn.Module):
    def __init__(self, channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.dense = nn.Sequential(*[DenseLayer(channels + i * growth, growth) for i in range(layers)])
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(self.dense(x))


class RDNCore(nn.Module):
    def __init__(
        self,
        *,
        channels: int = 32,
        blocks: int = 4,
        layers_per_block: int = 4,
        growth: int = 16,
        pixel_unshuffle: bool = True,
        noise_map: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = 1
        self.uses_noise_map = noise_map
        self.unshuffle = 2 if pixel_unshuffle else 1
        folded = self.unshuffle**2
        self.head = conv3x3(folded + int(noise_map), channels)
        self.blocks = nn.ModuleList([ResidualDenseBlock(channels, growth, layers_per_block) for _ in range(blocks)])
        self.global_fuse = nn.Sequential(nn.Conv2d(blocks * channels, channels, 1), conv3x3(channels, channels))
        self.tail = conv3x3(channels, folded)

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        h = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        if self.uses_noise_map:
            h = torch.cat([h, F.avg_pool2d(noise_map, self.unshuffle) if self.unshuffle > 1 else noise_map], dim=1)
        shallow = self.head(h)
        h = shallow
        outputs = []
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        h = shallow + self.global_fuse(torch.cat(outputs, dim=1))
        out = self.tail(h)
        if self.unshuffle > 1:
            out = F.pixel_shuffle(out, self.unshuffle)
        return x - out


def rdn(**options) -> SizeAgnostic:
    core = RDNCore(**options)
    return SizeAgnostic(core, core.unshuffle)


def grow_state(old_state: dict, new_state: dict, old_options: dict, new_options: dict) -> dict:
    """Weights for a deeper RDN that computes exactly what the shallower ``old_state`` computed.

    Only ``blocks`` may grow; every other option must match. The new blocks are appended after
    the old ones with their 1x1 fusion zeroed, so each passes its input through unchanged (its
    local residual), and global feature fusion gets zero weights for their outputs. Training then
    starts from the trained network's output instead of from scratch; the new blocks' dense
    layers keep the fresh initialisation in ``new_state`` so they have gradients to learn from.
    """
    other_old = {k: v for k, v in old_options.items() if k != "blocks"}
    other_new = {k: v for k, v in new_options.items() if k != "blocks"}
    old_blocks = old_options.get("blocks", 4)
    new_blocks = new_options.get("blocks", 4)
    if other_old != other_new or new_blocks < old_blocks:
        raise ConfigError(f"an rdn can only be grown in depth: {old_options} -> {new_options}")
    channels = new_options.get("channels", 32)
    grown = {k: v.clone() for k, v in new_state.items()}
    for key, value in old_state.items():
        if key.endswith("global_fuse.0.weight"):
            grown[key].zero_()
            grown[key][:, : old_blocks * channels] = value
        else:
            grown[key] = value.clone()
    for index in range(old_blocks, new_blocks):
        for key in grown:
            if f"blocks.{index}.fuse." in key:
                grown[key].zero_()
    return grown
