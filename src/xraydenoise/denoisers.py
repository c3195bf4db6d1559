"""Every denoiser behind one signature: ``fn(image float32 HxW in [0,1], sigma | None) -> float32 HxW``.

Classical filters and networks alike are looked up here by name, so the CLI, the benchmark
and the report all treat them the same way, and adding a method is adding one entry.

Names:
* ``gaussian``, ``median``, ``wavelet``, ``tv``, ``nlm``, ``bm3d``: classical filters;
* ``network`` (the shipped pretrained model, the default), or any ``*.safetensors`` / ``*.onnx``
  path: a network;
* ``network-x8``: the shipped model averaged over the 8 rotations and flips of the image
  (geometric self-ensemble): 8x the time for a slightly lower error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .errors import ConfigError
from .inference import DEFAULT_OVERLAP, OnnxBackend, TorchBackend, choose_tile_size, tile_inference

Denoiser = Callable[[np.ndarray, "float | None"], np.ndarray]

NETWORK_ALIASES = {"network": None, "network-x8": None}  # None: the shipped weights
NETWORK_ALIAS_OPTIONS = {"network-x8": {"ensemble": True}}


def _dihedral(array: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    """``array`` mirrored left-right (if ``flip``), then turned by ``turns`` quarter turns."""
    return np.ascontiguousarray(np.rot90(array[:, ::-1] if flip else array, turns))


class NetworkDenoiser:
    """A trained network with the common denoiser signature, tiled for any image size.

    Parameters
    ----------
    weights : path to ``.safetensors`` (with its ``.json`` model card) or ``.onnx``; None for the shipped model.
    backend : ``"torch"`` or ``"onnxruntime"``. With ``.onnx`` weights the backend is ONNX Runtime.
    tile : tile side in pixels; None chooses it from the image and the free memory.
    fast : PyTorch only: bf16 autocast and channels-last where the CPU has bf16 instructions.
    ensemble : average the outputs for the 8 rotations and flips of the image (8x the time).

    Examples
    --------
    >>> from xraydenoise.denoisers import NetworkDenoiser
    >>> net = NetworkDenoiser()                   # doctest: +SKIP
    >>> clean = net(noisy)                        # doctest: +SKIP
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        backend: str = "torch",
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        threads: int | None = None,
        fast: bool = False,
        ensemble: bool = False,
    ) -> None:
        if weights is not None and Path(weights).suffix.lower() == ".onnx":
            backend = "onnxruntime"
        if backend == "onnxruntime":
            if weights is None or Path(weights).suffix != ".onnx":
                from .export import ensure_onnx

                weights = ensure_onnx(weights)
            self.backend = OnnxBackend(weights, threads=threads)
            self.card = dict(self.backend.card)
        elif backend == "torch":
            from .errors import MissingDependencyError

            try:
                import torch
            except ImportError:
                raise MissingDependencyError(
                    "torch is not installed: pip install 'xraydenoise[torch]', or use --backend onnxruntime"
                ) from None
            from .training.hardware import cpu_has_bf16
            from .weights import load_model

            if threads:
                torch.set_num_threads(threads)
            model = load_model(weights)
            use_fast = fast and cpu_has_bf16()
            self.backend = TorchBackend(model, bf16=use_fast, channels_last=fast)
            self.card = model.card
        else:
            raise ConfigError(f"unknown backend {backend!r}; use torch or onnxruntime")
        self.tile = tile
        self.overlap = overlap
        self.ensemble = ensemble
        self.name = str(self.card.get("name", "network"))

    @property
    def uses_noise_map(self) -> bool:
        return self.backend.uses_noise_map

    def _run(self, image: np.ndarray, noise_map: np.ndarray | None) -> np.ndarray:
        height, width = image.shape
        tile = self.tile or choose_tile_size(height, width)
        if not self.ensemble:
            out = tile_inference(self.backend.run, image, noise_map=noise_map, tile=tile, overlap=self.overlap)
            return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)
        # Self-ensemble: the network is not exactly rotation/flip equivariant, so its errors on
        # the 8 transformed copies are partly independent and their mean is closer to the truth.
        out = np.zeros((height, width), dtype=np.float64)
        for turns in range(4):
            for flip in (False, True):
                transformed = _dihedral(image, turns, flip)
                transformed_map = None if noise_map is None else _dihedral(noise_map, turns, flip)
                result = tile_inference(self.backend.run, transformed, noise_map=transformed_map, tile=tile, overlap=self.overlap)
                result = np.rot90(result, -turns)
                out += result[:, ::-1] if flip else result
        return np.clip(out / 8, 0.0, 1.0).astype(np.float32)

    def __call__(self, image: np.ndarray, sigma: float | None = None) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        noise_map = None
        if self.uses_noise_map:
            if sigma is None:
                from .noise import estimate_gaussian_sigma

                sigma = estimate_gaussian_sigma(image)
            noise_map = np.full(image.shape, sigma, dtype=np.float32)
        return self._run(image, noise_map)

    def denoise_noise(self, noisy: np.ndarray, noise) -> np.ndarray:
        """Denoise knowing the noise model (used by the evaluation); blind networks ignore it."""
        if not self.uses_noise_map or noise is None:
            return self(noisy, None)
        from .noise import noise_std_map

        return self._run(np.asarray(noisy, dtype=np.float32), noise_std_map(noisy, noise).astype(np.float32))


def is_network(name: str) -> bool:
    return name in NETWORK_ALIASES or Path(name).suffix.lower() in (".safetensors", ".onnx")


def list_methods() -> list[str]:
    from .classical import CLASSICAL_METHODS

    return list(CLASSICAL_METHODS) + list(NETWORK_ALIASES)


_NETWORK_CACHE: dict[tuple, NetworkDenoiser] = {}


def get_denoiser(name: str, **network_options) -> Denoiser:
    """Look a method up by name; networks are loaded once and reused."""
    if is_network(name):
        weights = NETWORK_ALIASES.get(name, name)
        network_options = {**NETWORK_ALIAS_OPTIONS.get(name, {}), **network_options}
        key = (weights, tuple(sorted(network_options.items())))
        if key not in _NETWORK_CACHE:
            _NETWORK_CACHE[key] = NetworkDenoiser(weights, **network_options)
        return _NETWORK_CACHE[key]
    from .classical import get_classical

    return get_classical(name)


def denoise_with_noise(name: str, noisy: np.ndarray, noise, **network_options) -> np.ndarray:
    """Denoise ``noisy`` with method ``name`` given the true noise model (or None for blind).

    Classical filters get the true sigma (and reach Poisson-Gaussian noise through the
    generalised Anscombe transform); blind networks get nothing but the image.
    """
    if is_network(name):
        return get_denoiser(name, **network_options).denoise_noise(noisy, noise)
    from .classical import denoise_classical

    return denoise_classical(name, noisy, noise)
