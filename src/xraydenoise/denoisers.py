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
from typing import TYPE_CHECKING, Callable, cast

import numpy as np

from .errors import ConfigError, WeightsError, XRayDenoiseError
from .inference import DEFAULT_MARGIN, OnnxBackend, TorchBackend, choose_tiles, pad_to, tile_inference

if TYPE_CHECKING:  # pragma: no cover
    from .io import Image
    from .noise import NoiseModel

Denoiser = Callable[[np.ndarray, "float | NoiseModel | None"], np.ndarray]

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
    backend : ``"auto"`` (default: the fastest of PyTorch fp32, PyTorch bf16 where the CPU has
        bf16 instructions, and ONNX Runtime where an export is at hand, among those that match
        fp32 within 0.01 dB; measured once per process, see :func:`fastest_backend`),
        ``"torch"`` or ``"onnxruntime"``. With ``.onnx`` weights the backend is ONNX Runtime.
    device : ``"auto"`` (the first GPU if there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    tile : tile side in pixels; None chooses it from the image and the free memory. The output
        does not depend on it (see :func:`~xraydenoise.inference.tile_inference`).
    margin : context around each tile's core; None (default) takes the network's receptive-field
        radius from its card (:func:`~xraydenoise.models.receptive_radius`), or 128 px for a
        foreign ONNX graph. Smaller than that radius, tiles would show seams.
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
        margin: int | None = None,
        threads: int | None = None,
        fast: bool = False,
        ensemble: bool = False,
    ) -> None:
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int) or margin < 0):
            raise ConfigError(f"margin must be a whole number of pixels, 0 or more, got {margin!r}")
        from .hardware import resolve_device

        self.device = resolve_device(device)
        if weights is not None and Path(weights).suffix.lower() == ".onnx":
            backend = "onnxruntime"
        if backend == "auto":
            backend, fast = ("torch", True) if fast else fastest_backend(weights, device=self.device, threads=threads)
        if backend == "onnxruntime":
            self.backend: OnnxBackend | TorchBackend = _onnx_backend(weights, threads=threads, device=self.device)
            self.card = self.backend.card
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
        if margin is None:
            from .models import receptive_radius

            radius = receptive_radius(self.card.architecture, self.card.options)
            margin = DEFAULT_MARGIN if radius is None else radius
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile <= 2 * margin):
            raise ConfigError(f"tile must be an integer above twice the margin ({2 * margin}), got {tile!r}")
        self.tile = tile
        self.margin = margin
        self.ensemble = ensemble
        self.name = self.card.name

    @property
    def uses_noise_map(self) -> bool:
        return self.backend.uses_noise_map

    @property
    def noise_channels(self) -> int:
        """What the network is told: 0 (blind), 1 (std map), 3 (std map and correlation)."""
        return self.backend.noise_channels

    def condition(self, image: np.ndarray, noise=None) -> np.ndarray | None:
        """The ``(K, H, W)`` condition for ``image``: None for a blind network, else built from
        ``noise`` (a noise model, or a std with the correlation estimated) or, when None, from
        the noise estimated from the image itself (:func:`~xraydenoise.noise.noise_model_for`)."""
        if not self.noise_channels:
            return None
        from .noise import noise_condition, noise_model_for

        model = noise_model_for(image, noise)
        return noise_condition(image, model, correlation=self.noise_channels > 1)

    def condition_for(self, image: np.ndarray, noise=None):
        """What the network is told, as a function of a window of ``image``: the noise model is
        decided once for the whole image, the condition made tile by tile (a 4096 px image's
        three float32 condition channels would take 200 MB at once). None for a blind network."""
        if not self.noise_channels:
            return None
        from .noise import noise_condition, noise_model_for

        model = noise_model_for(image, noise)
        correlation = self.noise_channels > 1
        return lambda window: noise_condition(window, model, correlation=correlation)

    def auto_tile(self, height: int, width: int) -> tuple[int, int]:
        """The tile (height, width) chosen when none is given: the fewest pixels computed within
        the backend's memory budget, or a quarter of free RAM if less (see :func:`choose_tiles`)."""
        from .inference import _available_memory

        budget = min(self.backend.tile_memory_budget, _available_memory() // 4)
        return choose_tiles(height, width, margin=self.margin, multiple=self.backend.multiple,
                            bytes_per_pixel=self.backend.bytes_per_pixel, memory_budget=budget)

    def _tiled(self, image: np.ndarray, noise_map) -> np.ndarray:
        # The automatic tiles fit this image's own shape (a rotated copy's, in the self-ensemble).
        tile = self.tile or self.auto_tile(*image.shape)
        out = tile_inference(self.backend.run, image, noise_map=noise_map, tile=tile, margin=self.margin,
                             multiple=self.backend.multiple)
        if out.shape != image.shape:  # a foreign ONNX graph may crop or resize
            raise XRayDenoiseError(f"network {self.name} returned shape {out.shape} for an image of shape {image.shape}")
        return out

    def _run(self, image: np.ndarray, noise_map) -> np.ndarray:
        """``noise_map``: None, a ``(K, H, W)`` condition, or a function of a window (``condition_for``)."""
        height, width = image.shape
        if not self.ensemble:
            out = self._tiled(image, noise_map).astype(np.float32, copy=False)
            return np.clip(out, 0.0, 1.0, out=out)  # in place: a 4096 px image's copy is 64 MiB of peak
        # Self-ensemble: the network is not exactly rotation/flip equivariant, so its errors on
        # the 8 transformed copies are partly independent and their mean is closer to the truth.
        out = np.zeros((height, width), dtype=np.float64)
        for turns in range(4):
            for flip in (False, True):
                transformed = _dihedral(image, turns, flip)
                if noise_map is None or callable(noise_map):  # a function of the window: pointwise in it
                    transformed_map = noise_map
                else:
                    transformed_map = np.stack([_dihedral(c, turns, flip) for c in noise_map])
                result = self._tiled(transformed, transformed_map)
                result = np.rot90(result, -turns)
                out += result[:, ::-1] if flip else result
        return np.clip(out / 8, 0.0, 1.0).astype(np.float32)

    def __call__(self, image: np.ndarray, sigma=None) -> np.ndarray:
        """Denoise ``image``. A network that is told the noise is told ``sigma`` (a std on the
        [0, 1] scale, or a noise model), with what is not given estimated from the image
        (nothing given: everything estimated); a blind network reads only the image."""
        image = np.asarray(image, dtype=np.float32)
        return self._run(image, self.condition_for(image, sigma))

    def denoise_noise(self, noisy: np.ndarray, noise) -> np.ndarray:
        """Denoise told the noise model (the evaluation's "told the true noise"); blind networks ignore it."""
        return self(noisy, noise)


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


#: The default path may be faster than PyTorch fp32 only where it gives the same result: its
#: PSNR on the probe image within this of fp32's.
MATCH_DB = 0.01
#: Part of a remembered choice's key: raised when a backend changes what it computes or how
#: fast (2: bf16 reads the image in fp32), so that machines probe again rather than keep an
#: answer about the old code.
BACKENDS_VERSION = "2"
#: What ``backend="auto"`` chose, per weights file and device, for the rest of the process.
_FASTEST: dict[tuple, tuple[str, bool]] = {}


#: The probe: a chest and a hand radiograph among the bundled samples, each with a noise the
#: shipped network routes differently (white, and correlated signal-dependent).
_PROBES = (("nih_00001629_002.png", "10"), ("fracatlas_IMG0000025.png", "pg:0.01:3@exp:0.7"))


def _probe_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """(clean, noisy) pairs: 512 px centre crops of bundled radiographs with fixed-seed noise.

    512 px, not less: on smaller images the backends' fixed costs decide, and the one that wins
    there (PyTorch eager, at 256 px) lost by 25 % at 512 px, the size of the report's images.
    """
    from .io import load_image
    from .noise import parse_noise
    from .settings import PACKAGE_DIR

    pairs = []
    for name, spec in _PROBES:
        clean = load_image(PACKAGE_DIR / "samples" / name).to_float()
        side = min(512, *clean.shape)
        top, left = (clean.shape[0] - side) // 2, (clean.shape[1] - side) // 2
        clean = np.ascontiguousarray(clean[top : top + side, left : left + side])
        pairs.append((clean, parse_noise(spec).sample(clean, seed=0)))
    return pairs


def _onnxruntime_has_cuda() -> bool:
    """Whether this ONNX Runtime can run on a GPU (``onnxruntime-gpu``); the plain build cannot."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def backend_candidates(weights: str | Path | None = None, device: str = "cpu") -> list[tuple[str, bool]]:
    """The ``(backend, fast)`` pairs that can run ``weights`` on ``device`` here, fp32 PyTorch first.

    bf16 only on a GPU or a CPU with bf16 instructions; ONNX Runtime only where an export of
    exactly these weights is at hand and, for a GPU, where this ONNX Runtime has its CUDA provider
    (the plain build has none, and would fail rather than run on the CPU).
    """
    from .hardware import cpu_has_bf16

    try:  # importable, not merely present: a broken or blocked torch is no candidate
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
    candidates: list[tuple[str, bool]] = []
    if has_torch:
        candidates.append(("torch", False))
        if device != "cpu" or cpu_has_bf16():
            candidates.append(("torch", True))
    if default_backend(weights) == "onnxruntime" and (device == "cpu" or _onnxruntime_has_cuda()):
        candidates.append(("onnxruntime", False))
    return candidates


def fastest_matching(results: dict[tuple[str, bool], tuple[float, list[float]]]) -> tuple[str, bool]:
    """The fastest candidate whose PSNR on every probe is within :data:`MATCH_DB` of fp32 PyTorch's.

    ``results`` maps each candidate to (seconds, PSNR per probe) and holds ``("torch", False)``.

    >>> fastest_matching({("torch", False): (2.0, [40.0]), ("torch", True): (0.5, [39.98]),
    ...                   ("onnxruntime", False): (0.8, [40.0])})
    ('onnxruntime', False)
    """
    reference = results[("torch", False)][1]
    matching = [c for c, (_, scores) in results.items() if max(abs(a - b) for a, b in zip(scores, reference)) <= MATCH_DB]
    return min(matching, key=lambda c: results[c][0])


def fastest_backend(weights: str | Path | None = None, *, device: str = "cpu", threads: int | None = None) -> tuple[str, bool]:
    """``(backend, fast)`` of the fastest way to run ``weights`` that matches PyTorch fp32.

    The candidates are PyTorch fp32, ONNX Runtime (where it is installed and an export of
    exactly these weights is at hand, as for the shipped model) and PyTorch bf16 with
    channels-last (on a GPU, or a CPU with bf16 instructions: elsewhere bf16 is ~10x slower).
    Each denoises the probe images (:func:`_probe_images`) twice; the fastest whose PSNR is
    within :data:`MATCH_DB` of fp32's on every probe is chosen, once per machine (the choice is
    kept in the cache folder). Without torch ONNX Runtime
    is the only candidate; without an export and without bf16, PyTorch fp32 is.
    """
    import time

    key = (str(Path(weights).resolve()) if weights is not None else None, device)
    if key in _FASTEST:
        return _FASTEST[key]
    remembered = _remembered_choice(weights, device)
    if remembered is not None and _still_available(remembered, weights):
        _FASTEST[key] = remembered
        return remembered
    candidates = backend_candidates(weights, device)
    if len(candidates) <= 1:
        _FASTEST[key] = candidates[0] if candidates else ("torch", False)
        return _FASTEST[key]
    from .metrics import psnr

    probes = _probe_images()
    results: dict[tuple[str, bool], tuple[float, list[float]]] = {}
    for name, fast in candidates:
        network = NetworkDenoiser(weights, backend=name, fast=fast, device=device, threads=threads)
        seconds, scores = 0.0, []
        for clean, noisy in probes:
            condition = network.condition(noisy)
            runs = []
            for _ in range(2):  # the first run also warms the backend up; the faster run counts
                start = time.perf_counter()
                out = network.backend.run(noisy, condition)
                runs.append(time.perf_counter() - start)
            seconds += min(runs)
            scores.append(psnr(clean, np.clip(out, 0, 1)))
        results[(name, fast)] = (seconds, scores)
    _FASTEST[key] = fastest_matching(results)
    import logging

    logging.getLogger(__name__).debug("backend probe %s: %s -> %s", key, results, _FASTEST[key])
    _remember_choice(weights, device, _FASTEST[key], results)
    return _FASTEST[key]


def _still_available(choice: tuple[str, bool], weights: str | Path | None) -> bool:
    """Whether a remembered choice can still run here: torch importable (it may have been removed
    or blocked since), or an ONNX export of these weights at hand. Checked without importing torch
    for an ONNX Runtime choice, which would cost that path 300 MB."""
    if choice[0] == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            return False
        return True
    return default_backend(weights) == "onnxruntime"


def _choice_key(weights: str | Path | None, device: str) -> str:
    """What the probe's answer depends on: the weights, the device, the machine and the libraries."""
    import importlib.metadata

    from .export import weights_digest
    from .hardware import machine_description
    from .weights import shipped_weights

    versions = []
    for package in ("torch", "onnxruntime", "xraydenoise"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=none")
    source = Path(weights) if weights is not None else shipped_weights()
    return "|".join([weights_digest(source)[:16], device, machine_description(), *versions, f"backends={BACKENDS_VERSION}"])


def _choice_file() -> Path:
    from .settings import cache_dir

    return cache_dir() / "backend-choice.json"


def _remembered_choice(weights: str | Path | None, device: str) -> tuple[str, bool] | None:
    """The choice an earlier process made on this machine for these weights, if any."""
    import json

    try:
        entry = json.loads(_choice_file().read_text()).get(_choice_key(weights, device))
        return (str(entry[0]), bool(entry[1])) if entry else None
    except (OSError, ValueError, TypeError, IndexError, XRayDenoiseError):
        return None


def _remember_choice(weights: str | Path | None, device: str, choice: tuple[str, bool], results: dict) -> None:
    """Keep the choice in the cache folder, so later processes on this machine skip the probe."""
    import json

    from .io._atomic import atomic_write_text

    try:
        path = _choice_file()
        known = json.loads(path.read_text()) if path.is_file() else {}
        known[_choice_key(weights, device)] = [choice[0], choice[1],
                                                {f"{n}{'-bf16' if f else ''}": [round(t, 4), [round(p, 4) for p in ps]] for (n, f), (t, ps) in results.items()}]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1) + "\n")
    except (OSError, ValueError, XRayDenoiseError):
        pass  # a read-only cache only costs the next process a probe


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


def check_noise(noise: object):
    """``noise`` as a denoiser takes it: None, a std on the [0, 1] scale (see :func:`check_sigma`),
    or a noise model (:func:`~xraydenoise.noise.parse_noise`); anything else is a ConfigError."""
    from .noise import CorrelatedNoise, GaussianNoise, PoissonGaussianNoise

    if isinstance(noise, (GaussianNoise, PoissonGaussianNoise, CorrelatedNoise)):
        return noise
    return check_sigma(noise)


def run_denoiser(denoiser: Denoiser, image: np.ndarray, sigma: float | NoiseModel | None) -> np.ndarray:
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


def unit_range(image: Image) -> tuple[np.ndarray, float, float]:
    """``(values, low, span)``: the image on the [0, 1] scale that networks and filters work on,
    and how to map back (``pixels = values * span + low``).

    Integer images are scaled by their ``max_value`` (4095 for 12-bit DICOM): ``low = 0``,
    ``span = 1`` on the scale of :meth:`Image.to_float`. Float images within
    :data:`FLOAT_UNIT_RANGE` are taken as [0, 1]; wider ones (raw counts) are mapped from their
    own min..max (``span == 0`` for a constant image). Both ``denoise`` and ``adapt`` read
    images this way, so an adapted network sees its images as it will denoise them.
    """
    where = f"{image.source_path}: " if image.source_path else ""
    values = image.to_float()
    if not np.isfinite(values).all():
        raise XRayDenoiseError(f"{where}image contains NaN or Inf")
    if not values.size:
        raise XRayDenoiseError(f"{where}image is empty")
    low, high = float(values.min()), float(values.max())
    if not image.is_float or (FLOAT_UNIT_RANGE[0] <= low and high <= FLOAT_UNIT_RANGE[1]):
        return values, 0.0, 1.0
    span = high - low
    return (((values - low) / span) if span else np.zeros_like(values)).astype(np.float32), low, span


def denoise_image(image: Image, denoiser: Denoiser, sigma: float | NoiseModel | None = None) -> Image:
    """Denoise an :class:`~xraydenoise.io.Image` on its own range; returns an Image like it.

    The image is read on the [0, 1] scale as :func:`unit_range` says, denoised and mapped
    back, so the result keeps the input's units (for raw counts ``sigma`` is then a fraction of
    their min..max range). ``sigma`` may also be a noise model (``parse_noise("10@gauss:1")``),
    on the same scale.
    """
    sigma = check_noise(sigma)
    values, low, span = unit_range(image)
    if image.frames is not None:  # multi-frame DICOM (integer): every frame on the same scale
        return image.map_frames(lambda frame: run_denoiser(denoiser, frame, sigma))
    if (low, span) == (0.0, 1.0):
        return image.with_float(run_denoiser(denoiser, values, sigma))
    if span == 0:  # a constant image has no noise to remove
        return dataclasses.replace(image, pixels=image.pixels.copy())
    result = run_denoiser(denoiser, values, sigma)
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

    get_classical(name)  # an unknown name fails here
    if network_options:
        raise ConfigError(f"{', '.join(sorted(network_options))}: network options, not used by the {name} filter")
    return ClassicalDenoiser(name)


@dataclasses.dataclass(frozen=True)
class ClassicalDenoiser:
    """A classical filter with the common signature, told the noise as a user gives it.

    ``noise`` is a std on the [0, 1] scale (white Gaussian noise), a noise model (BM3D gets
    its power spectrum, signal-dependent noise goes through the generalised Anscombe
    transform; see :func:`~xraydenoise.classical.denoise_classical`), or None: the noise is
    then estimated from the image, level and correlation (:func:`~xraydenoise.noise.noise_model_for`),
    because detector noise is correlated and a white-noise estimate reads it far too low.
    """

    name: str

    def __call__(self, image: np.ndarray, noise=None) -> np.ndarray:
        from .classical import denoise_classical
        from .noise import GaussianNoise, noise_model_for

        if isinstance(noise, (int, float)):
            noise = GaussianNoise(float(noise))
        elif noise is None:
            noise = noise_model_for(image, None)
        return denoise_classical(self.name, image, noise)


#: What an evaluated method is told about the noise, as a prefix of its name: ``told:`` the true
#: noise model, ``estimate:`` the noise estimated from the noisy image alone.
METHOD_MODES = ("told", "estimate")


def split_mode(spec: str) -> tuple[str, str | None]:
    """``"told:network"`` -> ``("network", "told")``; a name without a mode -> ``(name, None)``.

    >>> split_mode("estimate:bm3d"), split_mode("bm3d")
    (('bm3d', 'estimate'), ('bm3d', None))
    """
    head, colon, rest = spec.partition(":")
    if colon and head in METHOD_MODES and rest:
        return rest, head
    return spec, None


def denoise_with_noise(name: str, noisy: np.ndarray, noise, **network_options) -> np.ndarray:
    """Denoise ``noisy`` with method ``name`` for the true noise model ``noise`` (the evaluation).

    Without a mode, classical filters are told the true noise (BM3D its power spectrum,
    Poisson-Gaussian noise through the generalised Anscombe transform) and networks nothing:
    a blind one reads the image, one that is told the noise estimates it from the image.
    ``told:NAME`` tells a network the true noise; ``estimate:NAME`` tells a filter the noise
    estimated from the noisy image (:func:`~xraydenoise.noise.noise_model_for`).
    """
    base, mode = split_mode(name)
    if is_network(base):
        network = cast(NetworkDenoiser, get_denoiser(base, **network_options))  # is_network(base)
        return network.denoise_noise(noisy, noise) if mode == "told" else network(noisy, None)
    from .classical import denoise_classical

    if mode == "estimate":
        from .noise import noise_model_for

        noise = noise_model_for(noisy, None)
    return denoise_classical(base, noisy, noise)
