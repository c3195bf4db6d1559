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

import dataclasses
import math
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .errors import ConfigError, WeightsError, XRayDenoiseError
from .inference import DEFAULT_MARGIN, OnnxBackend, TorchBackend, choose_tile_size, pad_to, tile_inference

if TYPE_CHECKING:  # pragma: no cover
    from .io import Image

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
    backend : ``"auto"`` (default: ONNX Runtime where it is installed and an export exists or can
        be made, as it matches PyTorch fp32 to 3e-7 and is the faster CPU path; else PyTorch),
        ``"torch"`` or ``"onnxruntime"``. With ``.onnx`` weights the backend is ONNX Runtime.
    device : ``"auto"`` (the first GPU if there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    tile : tile side in pixels; None chooses it from the image and the free memory. The output
        does not depend on it (see :func:`~xraydenoise.inference.tile_inference`).
    margin : context around each tile's core, at least the network's receptive-field radius.
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
        backend: str = "auto",
        device: str = "auto",
        tile: int | None = None,
        margin: int = DEFAULT_MARGIN,
        threads: int | None = None,
        fast: bool = False,
        ensemble: bool = False,
    ) -> None:
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile <= 2 * margin):
            raise ConfigError(f"tile must be an integer above twice the margin ({2 * margin}), got {tile!r}")
        from .hardware import resolve_device

        self.device = resolve_device(device)
        if weights is not None and Path(weights).suffix.lower() == ".onnx":
            backend = "onnxruntime"
        if backend == "auto":
            backend = "torch" if fast else default_backend(weights)
        if backend == "onnxruntime":
            self.backend = _onnx_backend(weights, threads=threads, device=self.device)
            self.card = dict(self.backend.card)
        elif backend == "torch":
            from .errors import MissingDependencyError

            try:
                import torch
            except ImportError:
                raise MissingDependencyError(
                    "torch is not installed: pip install 'xraydenoise[torch]', or use --backend onnxruntime"
                ) from None
            from .hardware import cpu_has_bf16
            from .weights import load_model

            if threads:
                torch.set_num_threads(threads)
            model = load_model(weights)
            use_fast = fast and (self.device != "cpu" or cpu_has_bf16())
            self.backend = TorchBackend(model, device=self.device, bf16=use_fast, channels_last=fast)
            self.card = model.card
        else:
            raise ConfigError(f"unknown backend {backend!r}; use auto, torch or onnxruntime")
        self.backend_name = backend
        self.tile = tile
        self.margin = margin
        self.ensemble = ensemble
        self.name = str(self.card.get("name", "network"))

    @property
    def uses_noise_map(self) -> bool:
        return self.backend.uses_noise_map

    def _tiled(self, image: np.ndarray, noise_map: np.ndarray | None, tile: int) -> np.ndarray:
        out = tile_inference(self.backend.run, image, noise_map=noise_map, tile=tile, margin=self.margin,
                             multiple=self.backend.multiple)
        if out.shape != image.shape:  # a foreign ONNX graph may crop or resize
            raise XRayDenoiseError(f"network {self.name} returned shape {out.shape} for an image of shape {image.shape}")
        return out

    def _run(self, image: np.ndarray, noise_map: np.ndarray | None) -> np.ndarray:
        height, width = image.shape
        tile = self.tile or choose_tile_size(height, width)
        if not self.ensemble:
            return np.clip(self._tiled(image, noise_map, tile), 0.0, 1.0).astype(np.float32, copy=False)
        # Self-ensemble: the network is not exactly rotation/flip equivariant, so its errors on
        # the 8 transformed copies are partly independent and their mean is closer to the truth.
        out = np.zeros((height, width), dtype=np.float64)
        for turns in range(4):
            for flip in (False, True):
                transformed = _dihedral(image, turns, flip)
                transformed_map = None if noise_map is None else _dihedral(noise_map, turns, flip)
                result = self._tiled(transformed, transformed_map, tile)
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


def _onnx_backend(weights: str | Path | None, *, threads: int | None, device: str) -> OnnxBackend:
    if weights is not None and Path(weights).suffix.lower() == ".onnx":
        return OnnxBackend(weights, threads=threads, device=device)
    from .export import ensure_onnx
    from .settings import cache_dir

    exported = ensure_onnx(weights)
    try:
        return OnnxBackend(exported, threads=threads, device=device)
    except WeightsError:
        if cache_dir() not in exported.resolve().parents:
            raise
        exported.unlink(missing_ok=True)  # a damaged cached export is rebuilt once, not trusted
        return OnnxBackend(ensure_onnx(weights), threads=threads, device=device)


def default_backend(weights: str | Path | None = None) -> str:
    """The backend ``auto`` picks for ``weights``: ONNX Runtime when it is installed and an export
    of exactly these weights is at hand (shipped beside them, or cached by an earlier run), or when
    torch is missing; else torch, rather than a first run spending half a minute on an export."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    if importlib.util.find_spec("torch") is None:
        return "onnxruntime"
    from .export import cached_onnx, onnx_source_digest, weights_digest
    from .weights import shipped_onnx, shipped_weights

    source = Path(weights) if weights is not None else shipped_weights()
    if not source.is_file():
        return "torch"  # the loader says what is missing
    packaged = shipped_onnx(source)
    if packaged is not None and onnx_source_digest(packaged) == weights_digest(source):
        return "onnxruntime"
    return "onnxruntime" if cached_onnx(source).is_file() else "torch"


def is_network(name: str) -> bool:
    return name in NETWORK_ALIASES or Path(name).suffix.lower() in (".safetensors", ".onnx")


def list_methods() -> list[str]:
    from .classical import CLASSICAL_METHODS

    return list(CLASSICAL_METHODS) + list(NETWORK_ALIASES)


#: Images smaller than this on a side are padded for the filters (BM3D's blocks are 8 px, NLM's
#: patches 7 px) and cropped back, so a 1x1 or 1xN image goes through every method.
MIN_SIDE = 16
#: Float images whose values stay within this range are on the [0, 1] scale (unclipped noise
#: overshoots 0 and 1); anything wider holds raw units (detector counts) and is rescaled.
FLOAT_UNIT_RANGE = (-1.0, 2.0)


def check_sigma(sigma: object) -> float | None:
    """``sigma`` as a float on the [0, 1] scale, or None; anything else is a one-line ConfigError."""
    if sigma is None:
        return None
    if isinstance(sigma, bool) or not isinstance(sigma, Real):
        raise ConfigError(f"sigma must be a number on the [0, 1] scale or None, got {type(sigma).__name__} {sigma!r}")
    value = float(sigma)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"sigma must be between 0 and 1 (the image's full range), got {value:g}")
    return value


def run_denoiser(denoiser: Denoiser, image: np.ndarray, sigma: float | None) -> np.ndarray:
    """Call ``denoiser`` on a float32 [0, 1] image, padding tiny images and checking the result."""
    height, width = image.shape
    padded = pad_to(image, max(height, MIN_SIDE), max(width, MIN_SIDE))
    result = np.asarray(denoiser(padded, sigma))
    if result.shape != padded.shape:
        raise XRayDenoiseError(f"the denoiser returned shape {result.shape} for an image of shape {padded.shape}")
    result = result[:height, :width]
    if not np.isfinite(result).all():
        raise XRayDenoiseError("the denoiser returned NaN or Inf")
    return result.astype(np.float32, copy=False)


def denoise_image(image: Image, denoiser: Denoiser, sigma: float | None = None) -> Image:
    """Denoise an :class:`~xraydenoise.io.Image` on its own range; returns an Image like it.

    Integer images are scaled by their ``max_value`` (4095 for 12-bit DICOM). Float images
    within :data:`FLOAT_UNIT_RANGE` are taken as [0, 1]; wider ones (raw counts) are mapped
    from their own min..max to [0, 1], denoised and mapped back, so the result keeps the
    input's units (``sigma`` is then a fraction of that min..max range).
    """
    where = f"{image.source_path}: " if image.source_path else ""
    values = image.to_float()
    if not np.isfinite(values).all():
        raise XRayDenoiseError(f"{where}image contains NaN or Inf")
    sigma = check_sigma(sigma)
    if not values.size:
        raise XRayDenoiseError(f"{where}image is empty")
    low, high = float(values.min()), float(values.max())
    raw_units = image.is_float and not (FLOAT_UNIT_RANGE[0] <= low and high <= FLOAT_UNIT_RANGE[1])
    if image.frames is not None:  # multi-frame DICOM (integer): every frame on the same scale
        return image.map_frames(lambda frame: run_denoiser(denoiser, frame, sigma))
    if not raw_units:
        return image.with_float(run_denoiser(denoiser, values, sigma))
    span = high - low
    if span == 0:  # a constant image has no noise to remove
        return dataclasses.replace(image, pixels=image.pixels.copy())
    result = run_denoiser(denoiser, ((values - low) / span).astype(np.float32), sigma)
    return dataclasses.replace(image, pixels=(result.astype(np.float64) * span + low).astype(np.float32))


_NETWORK_CACHE: dict[tuple, NetworkDenoiser] = {}


def get_denoiser(name: str, **network_options) -> Denoiser:
    """Look a method up by name; networks are loaded once and reused.

    ``network_options`` (backend, tile, fast, ...) apply to networks only: given with a
    classical filter, or unknown, they are a ConfigError rather than silently ignored.
    """
    if not isinstance(name, str):
        raise ConfigError(f"method must be a name or a weights path, got {type(name).__name__}")
    if is_network(name):
        weights = NETWORK_ALIASES.get(name, name)
        network_options = {**NETWORK_ALIAS_OPTIONS.get(name, {}), **network_options}
        key = (weights, tuple(sorted(network_options.items())))
        if key not in _NETWORK_CACHE:
            try:
                _NETWORK_CACHE[key] = NetworkDenoiser(weights, **network_options)
            except TypeError as exc:  # an unknown option name
                raise ConfigError(f"bad network option: {exc}") from None
        return _NETWORK_CACHE[key]
    from .classical import get_classical

    method = get_classical(name)
    if network_options:
        raise ConfigError(f"{', '.join(sorted(network_options))}: network options, not used by the {name} filter")
    return method


def denoise_with_noise(name: str, noisy: np.ndarray, noise, **network_options) -> np.ndarray:
    """Denoise ``noisy`` with method ``name`` given the true noise model (or None for blind).

    Classical filters get the true sigma (and reach Poisson-Gaussian noise through the
    generalised Anscombe transform); blind networks get nothing but the image.
    """
    if is_network(name):
        return get_denoiser(name, **network_options).denoise_noise(noisy, noise)
    from .classical import denoise_classical

    return denoise_classical(name, noisy, noise)
