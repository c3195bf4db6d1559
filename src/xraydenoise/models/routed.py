"""Two experts behind one network: white-noise and detector-noise denoisers, routed by the noise.

One network trained on white, quantum and detector-correlated noise together trades one against
the other at a fixed size: told the noise, fine-tuned on the mix, the shipped RDN gained 6-8 dB
on correlated noise and lost 0.3-0.45 dB on white noise (docs/results). Two experts, each
trained on its own family, keep both; the condition the network is told already says which
family the noise is, through its lag-1 autocorrelation (channel 1, 0 for white noise):

* lag-1 autocorrelation at most ``gate[0]``: the white expert alone (blind, or told the std map);
* at least ``gate[1]``: the detector expert alone (told std map and correlation);
* in between, where an estimate from the image cannot tell weakly correlated noise from
  white noise on textured anatomy, the two outputs blended linearly.

The gate is taken per image (the mean of its correlation channel), so tiles of one image take
the same route and the result stays independent of the tiling. An expert whose weight is 0
for the whole batch is not run, in eager PyTorch and in an exported (ONNX) graph alike.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .blocks import SizeAgnostic


class RoutedCore(nn.Module):
    def __init__(self, white: SizeAgnostic, correlated: SizeAgnostic, gate: tuple[float, ...]) -> None:
        super().__init__()
        if white.noise_channels not in (0, 1) or correlated.noise_channels != 3:
            raise ConfigError("a routed network needs a white expert, blind or told the std map (noise_map), and a "
                              "detector expert told the correlation too (noise_map and correlation)")
        low, high = float(gate[0]), float(gate[1])
        if not 0 <= low < high <= 1:
            raise ConfigError(f"routed gate must be two autocorrelations 0 <= low < high <= 1, got {gate!r}")
        self.white = white
        # A blind white expert (one trained longest on white noise alone) is run without the map.
        self.white_is_blind = white.noise_channels == 0
        self.correlated = correlated
        self.gate = (low, high)
        self.in_channels = 1
        self.uses_noise_map = True
        self.noise_channels = 3

    def weights(self, noise_map: torch.Tensor) -> torch.Tensor:
        """Per-image weight of the detector expert, ``(B, 1, 1, 1)`` in [0, 1]."""
        low, high = self.gate
        lag1 = noise_map[:, 1:2].mean(dim=(2, 3), keepdim=True)
        return ((lag1 - low) / (high - low)).clamp(0.0, 1.0)

    def _run_white(self, x: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
        return self.white(x) if self.white_is_blind else self.white(x, noise_map[:, :1])

    def _white(self, x: torch.Tensor, noise_map: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._run_white(x, noise_map)

    def _correlated(self, x: torch.Tensor, noise_map: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.correlated(x, noise_map)

    def _blend(self, x: torch.Tensor, noise_map: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (1 - w) * self._run_white(x, noise_map) + w * self.correlated(x, noise_map)

    def _not_white(self, x: torch.Tensor, noise_map: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.cond((w == 1).all(), self._correlated, self._blend, (x, noise_map, w))

    def forward(self, x: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
        w = self.weights(noise_map)
        if torch.compiler.is_compiling():
            # An exported graph (ONNX) branches too, with If nodes, so it runs one expert, not both.
            return torch.cond((w == 0).all(), self._white, self._not_white, (x, noise_map, w))
        if bool((w == 0).all()):
            return self._white(x, noise_map, w)
        if bool((w == 1).all()):
            return self._correlated(x, noise_map, w)
        return self._blend(x, noise_map, w)


def routed(*, white: dict, correlated: dict, gate: tuple[float, float] | list[float] = (0.05, 0.15)) -> SizeAgnostic:
    """A routed network from the two experts' options (each an ``rdn`` option dict)."""
    from .rdn import rdn

    if not isinstance(white, dict) or not isinstance(correlated, dict):
        raise ConfigError("routed options white and correlated must be the experts' rdn options")
    white_net, correlated_net = rdn(**white), rdn(**correlated)
    core = RoutedCore(white_net, correlated_net, tuple(gate))
    return SizeAgnostic(core, max(white_net.multiple, correlated_net.multiple))


def compose_state(white_state: dict, correlated_state: dict) -> dict:
    """The routed network's state from its two experts' states."""
    state = {f"core.white.{k}": v for k, v in white_state.items()}
    state.update({f"core.correlated.{k}": v for k, v in correlated_state.items()})
    return state
