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
    #: The convolution that reads the image (kept fp32 under bf16 autocast: blocks.Float32Input).
    input_layers = ("head",)

    def __init__(
        self,
        *,
        channels: int = 32,
        blocks: int = 4,
        layers_per_block: int = 4,
        growth: int = 16,
        pixel_unshuffle: bool = True,
        noise_map: bool = False,
        correlation: bool = False,
        noise_map_gain: float = 1.0,
    ) -> None:
        super().__init__()
        if correlation and not noise_map:
            raise ConfigError("rdn option correlation needs noise_map: the correlation channels follow the std map")
        self.in_channels = 1
        self.uses_noise_map = noise_map
        # std map, then the lag-1 and lag-2 autocorrelation (xraydenoise.noise.condition)
        self.noise_channels = (3 if correlation else 1) if noise_map else 0
        # The std map is ~0.01-0.2 on the [0, 1] scale; a gain brings it near the unit range of
        # the image and the correlation channels, so its weights learn at the same pace.
        self.noise_map_gain = float(noise_map_gain)
        self.unshuffle = 2 if pixel_unshuffle else 1
        folded = self.unshuffle**2
        self.head = conv3x3(folded + self.noise_channels, channels)
        self.blocks = nn.ModuleList([ResidualDenseBlock(channels, growth, layers_per_block) for _ in range(blocks)])
        self.global_fuse = nn.Sequential(nn.Conv2d(blocks * channels, channels, 1), conv3x3(channels, channels))
        self.tail = conv3x3(channels, folded)

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        h = F.pixel_unshuffle(x, self.unshuffle) if self.unshuffle > 1 else x
        if self.uses_noise_map:
            assert noise_map is not None, "this network is told the noise: pass noise_map"
            condition = F.avg_pool2d(noise_map, self.unshuffle) if self.unshuffle > 1 else noise_map
            if self.noise_map_gain != 1.0:
                condition = torch.cat([condition[:, :1] * self.noise_map_gain, condition[:, 1:]], dim=1)
            h = torch.cat([h, condition], dim=1)
        shallow = self.head(h)
        h = shallow + self.global_fuse[1](self._fused_blocks(shallow))
        out = self.tail(h)
        if self.unshuffle > 1:
            out = F.pixel_shuffle(out, self.unshuffle)
        return x - out

    def _fused_blocks(self, h: torch.Tensor) -> torch.Tensor:
        """Global feature fusion's 1x1 convolution of all blocks' outputs, summed block by block.

        A 1x1 convolution of the concatenated outputs is the sum of one 1x1 convolution per
        output (its weight's slice), so each block's share is added as soon as the block is
        done: no output is kept for later and the blocks x channels concatenation, the largest
        tensor of the network, is never made (about 100 MiB less at 1024 x 1024 in bf16).
        """
        fuse: nn.Conv2d = self.global_fuse[0]  # type: ignore[assignment]  # Sequential's items are typed Module
        channels = h.shape[1]
        fused = None
        for i, block in enumerate(self.blocks):
            h = block(h)
            share = F.conv2d(h, fuse.weight[:, i * channels : (i + 1) * channels], fuse.bias if i == 0 else None)
            fused = share if fused is None else fused + share
        assert fused is not None, "an rdn has at least one block"
        return fused


def rdn(**options) -> SizeAgnostic:
    core = RDNCore(**options)
    return SizeAgnostic(core, core.unshuffle)


#: Options that may change when a trained RDN grows: its depth, and being told the noise.
_GROWABLE = ("blocks", "noise_map", "correlation", "noise_map_gain")


def grow_state(old_state: dict, new_state: dict, old_options: dict, new_options: dict) -> dict:
    """Weights for a larger RDN that computes exactly what the trained ``old_state`` computed.

    Two kinds of growth, alone or together:

    * depth (``blocks``): the new blocks are appended after the old ones with their 1x1
      fusion zeroed, so each passes its input through unchanged (its local residual), and
      global feature fusion gets zero weights for their outputs;
    * being told the noise (``noise_map``, then ``correlation``): a blind network gains
      condition channels, a std-map network the correlation channels, with zero weights in
      the head convolution, so the network ignores them until training teaches it to use them.

    Training then starts from the trained network's output instead of from scratch; the new
    parts keep the fresh initialisation in ``new_state`` where they have gradients to learn from.
    """
    defaults = {"blocks": 4, "noise_map": False, "correlation": False, "noise_map_gain": 1.0}
    old = {**defaults, **old_options}
    new = {**defaults, **new_options}
    fixed_old = {k: v for k, v in old.items() if k not in _GROWABLE}
    fixed_new = {k: v for k, v in new.items() if k not in _GROWABLE}
    shrinks = (new["blocks"] < old["blocks"] or (old["noise_map"] and not new["noise_map"])
               or (old["correlation"] and not new["correlation"]))
    if fixed_old != fixed_new or shrinks:
        raise ConfigError(f"an rdn can only grow in depth or gain noise channels: {old_options} -> {new_options}")
    if old["noise_map"] and old["noise_map_gain"] != new["noise_map_gain"]:
        raise ConfigError(f"an rdn's noise_map_gain cannot change once it uses a noise map: {old_options} -> {new_options}")
    old_blocks, new_blocks = old["blocks"], new["blocks"]
    channels = new.get("channels", 32)
    grown = {k: v.clone() for k, v in new_state.items()}
    for key, value in old_state.items():
        if key.endswith("global_fuse.0.weight"):
            grown[key].zero_()
            grown[key][:, : old_blocks * channels] = value
        elif key.endswith("head.weight") and value.shape != grown[key].shape:
            grown[key].zero_()  # image channels first, then the condition channels
            grown[key][:, : value.shape[1]] = value
        else:
            grown[key] = value.clone()
    for index in range(old_blocks, new_blocks):
        for key in grown:
            if f"blocks.{index}.fuse." in key:
                grown[key].zero_()
    return grown
