"""Network inference for images of any size: tiling with smooth blending, PyTorch and ONNX Runtime.

Radiographs are 2000-4300 pixels a side. Whole-image inference holds several full-resolution
feature maps at once, so large images are cut into tiles, each run with a margin of context
wider than the network's receptive field and cropped back to its core: the result does not
depend on the tile size (see :func:`tile_inference`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal, Protocol

import numpy as np

from .errors import MissingDependencyError, WeightsError
from .hardware import release_freed_memory, reuse_freed_memory

#: Tiles are at most this many pixels per side unless asked otherwise.
DEFAULT_TILE = 1024
#: Context kept around each tile's core when the network's receptive field is not known (a
#: foreign ONNX graph); networks of this package use their own radius (models.receptive_radius:
#: 55 px for the shipped RDNs), so tiled output equals whole-image output (see tile_inference).
DEFAULT_MARGIN = 128
#: Smallest tile that leaves a useful core inside two default margins.
MIN_TILE = 2 * DEFAULT_MARGIN + 128

#: Peak activation memory per input pixel of the shipped network with ONNX Runtime (fp32), an
#: upper bound of what ``python benchmarks/activation_memory.py`` measures (several feature maps
#: alive at once); PyTorch's own figures are on :class:`TorchBackend`.
BYTES_PER_PIXEL = 550


class Backend(Protocol):
    multiple: int
    uses_noise_map: bool
    #: Condition channels the network takes: 0 (blind), 1 (std map), 3 (std map + correlation).
    noise_channels: int
    #: Bytes of activations a tile may take when the tile size is chosen automatically.
    tile_memory_budget: int
    #: Peak activation bytes per input pixel (measured), which turns that budget into pixels.
    bytes_per_pixel: int

    def run(self, image: np.ndarray, noise_map: np.ndarray | None = None) -> np.ndarray: ...


def pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """``array`` padded at the bottom and right to at least ``height`` x ``width``.

    Mirrored (reflect) where the image is large enough, else its edge repeated, so that even a
    1x1 image can be padded; the same rule as the PyTorch models' own padding.
    """
    pad_h, pad_w = max(0, height - array.shape[0]), max(0, width - array.shape[1])
    if not (pad_h or pad_w):
        return array
    mode: Literal["reflect", "edge"] = "reflect" if pad_h < array.shape[0] and pad_w < array.shape[1] else "edge"
    return np.pad(array, ((0, pad_h), (0, pad_w)), mode=mode)


def _pad(array: np.ndarray, multiple: int) -> np.ndarray:
    """``array`` (H, W) or (K, H, W) padded to multiples of ``multiple``, each channel like the image."""
    height, width = array.shape[-2:]
    if array.ndim == 3:
        return np.stack([_pad(channel, multiple) for channel in array])
    return pad_to(array, height + (-height) % multiple, width + (-width) % multiple)


def _as_condition(noise_map: np.ndarray) -> np.ndarray:
    """A condition as (K, H, W) float32: a plain std map (H, W) is one channel."""
    condition = np.array(noise_map, dtype=np.float32, order="C")
    return condition[None] if condition.ndim == 2 else condition


class TorchBackend:
    """Eager PyTorch on the CPU (or a GPU when asked), fp32 by default."""

    #: Activation memory a tile may take: PyTorch's runtime holds about 150 MiB more than ONNX
    #: Runtime's, so its tiles get less, and a 4096x4096 16-bit radiograph still goes
    #: through in under 1 GiB whichever backend the default path picked (``make bench``).
    tile_memory_budget = 320 * 1024**2
    #: Peak activation bytes per input pixel, fp32 and bf16 (see BYTES_PER_PIXEL).
    FP32_BYTES_PER_PIXEL = 450
    BF16_BYTES_PER_PIXEL = 300

    def __init__(self, model, *, device: str = "cpu", bf16: bool = False, channels_last: bool = False) -> None:
        import torch

        self.torch = torch
        if device == "cpu":  # feature maps reused from image to image, not faulted in anew
            reuse_freed_memory()
        # Upper bounds of benchmarks/activation_memory.py's figures: bf16 halves most feature maps
        self.bytes_per_pixel = self.BF16_BYTES_PER_PIXEL if bf16 else self.FP32_BYTES_PER_PIXEL
        if bf16:  # the image-reading convolutions in fp32: see models.blocks.Float32Input
            from .models.blocks import keep_input_layers_fp32

            model = keep_input_layers_fp32(model)
        self.model = model.to(device).eval()
        self.device = device
        self.bf16 = bf16
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.multiple = model.multiple
        self._last_shape: tuple[int, ...] = ()
        self.uses_noise_map = model.uses_noise_map
        self.noise_channels = model.noise_channels

    def run(self, image: np.ndarray, noise_map: np.ndarray | None = None) -> np.ndarray:
        torch = self.torch
        if image.shape != self._last_shape:  # what the last shape freed is the wrong sizes for this one
            release_freed_memory()
            self._last_shape = image.shape
        # A copy, not ascontiguousarray: a 1-pixel-wide view with a negative stride counts as
        # contiguous to numpy, and torch refuses negative strides.
        x = torch.from_numpy(np.array(image, dtype=np.float32, order="C"))[None, None].to(self.device)
        m = None if noise_map is None else torch.from_numpy(_as_condition(noise_map))[None].to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            m = None if m is None else m.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
            y = self.model(x) if m is None else self.model(x, m)
        return y.float()[0, 0].cpu().numpy()


class OnnxBackend:
    """ONNX Runtime; needs neither torch nor PyTorch-format weights at run time."""

    tile_memory_budget = 512 * 1024**2  # see TorchBackend.tile_memory_budget
    bytes_per_pixel = BYTES_PER_PIXEL

    def __init__(self, path: str | Path, *, threads: int | None = None, device: str = "cpu") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime is not installed: pip install 'xraydenoise[onnx-runtime]'") from None
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the user's terminal is not a debug log
        # The memory pattern pre-plans one block for every tensor of a run and keeps it: about
        # 1.7x the peak of allocating as it goes (1300 vs 750 bytes per pixel), at the same speed.
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        providers: list = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise MissingDependencyError(f"{device} asked for, but this onnxruntime has no CUDA provider: pip install onnxruntime-gpu")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}))
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise WeightsError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        multiple = meta.get("multiple", "1")
        if not (multiple.isdigit() and 1 <= int(multiple) <= 64):
            raise WeightsError(f"{path}: ONNX metadata 'multiple' must be an integer from 1 to 64, got {multiple!r}")
        if meta.get("noise_map", "false") not in ("true", "false"):
            raise WeightsError(f"{path}: ONNX metadata 'noise_map' must be true or false, got {meta['noise_map']!r}")
        self.multiple = int(multiple)
        self.uses_noise_map = meta.get("noise_map", "false") == "true"
        channels = meta.get("noise_channels", "1" if self.uses_noise_map else "0")
        if channels not in ("0", "1", "3") or (channels == "0") == self.uses_noise_map:
            raise WeightsError(f"{path}: ONNX metadata 'noise_channels' must be 0 (blind), 1 or 3 and agree with 'noise_map', got {channels!r}")
        self.noise_channels = int(channels)
        self.meta = meta
        self.card = _card_from_meta(meta, path)

    def run(self, image: np.ndarray, noise_map: np.ndarray | None = None) -> np.ndarray:
        height, width = image.shape
        feeds = {"noisy": _pad(image.astype(np.float32, copy=False), self.multiple)[None, None]}
        if self.uses_noise_map:
            assert noise_map is not None, "this network is told the noise: pass noise_map"
            feeds["noise_map"] = _pad(_as_condition(noise_map), self.multiple)[None]
        out = self.session.run(None, feeds)[0]
        return out[0, 0, :height, :width]


def _card_from_meta(meta: dict, path: Path):
    """The model card an export carries in its metadata (a minimal one for a foreign graph)."""
    import json

    from .weights import ModelCard

    try:
        return ModelCard.from_dict(json.loads(meta["card"]), where=f"{path} (ONNX metadata)")
    except (KeyError, ValueError, WeightsError):
        return ModelCard(name=str(meta.get("name", path.stem)), architecture="onnx")


#: Activation memory a tile may take by default (each backend sets its own, see
#: TorchBackend.tile_memory_budget): with the image, the model and the libraries, a 4096x4096
#: 16-bit radiograph is denoised in under 1 GiB (``make bench`` measures the peak).
TILE_MEMORY_BUDGET = OnnxBackend.tile_memory_budget


def choose_tile_size(height: int, width: int, *, bytes_per_pixel: int = BYTES_PER_PIXEL, memory_budget: int | None = None) -> int:
    """Largest square tile side whose activations fit the memory budget (default: 512 MiB, or a
    quarter of free RAM if less); :func:`choose_tiles` picks the tile shape that wastes least.
    """
    if memory_budget is None:
        memory_budget = min(TILE_MEMORY_BUDGET, _available_memory() // 4)
    side = int((memory_budget / bytes_per_pixel) ** 0.5)
    side = max(MIN_TILE, min(side, 2048))
    return min(side, max(height, width))


def choose_tiles(height: int, width: int, *, margin: int, multiple: int = 1, bytes_per_pixel: int = BYTES_PER_PIXEL,
                 memory_budget: int | None = None) -> tuple[int, int]:
    """The tile (height, width) for :func:`tile_inference` that computes the fewest pixels.

    Every seam between two tiles costs ``2 * margin`` rows or columns of context computed twice:
    2x2 square tiles of a 1024x1024 image compute 1.23x its pixels at a 55 px margin, two
    full-width strips 1.11x. So the image is cut into ``ny`` x ``nx`` tiles, the pair with the
    least total window area among those whose largest window fits the memory budget (see
    :func:`choose_tile_size` for the budget); an image that fits is run whole.
    """
    if memory_budget is None:
        memory_budget = min(TILE_MEMORY_BUDGET, _available_memory() // 4)
    budget_pixels = max(memory_budget // bytes_per_pixel, MIN_TILE * MIN_TILE)
    if height * width <= budget_pixels:
        return height, width
    multiple = max(1, int(multiple))
    margin = _round_up(max(0, int(margin)), multiple)

    def split(length: int, count: int) -> tuple[int, int, int]:
        """(core, largest window, summed window length) of ``count`` tiles along one side."""
        core = _round_up(-(-length // count), multiple)
        seams = count - 1
        window = min(length, core + margin * min(seams, 2))
        return core, window, length + 2 * margin * seams

    # Cores narrower than the margin would be mostly context: that bounds the tile counts.
    shortest_core = max(margin, multiple, 16)
    best: tuple[int, int, int, int] | None = None  # (pixels computed, tiles, tile height, tile width)
    for ny in range(1, max(1, height // shortest_core) + 1):
        core_h, window_h, total_h = split(height, ny)
        for nx in range(1, max(1, width // shortest_core) + 1):
            core_w, window_w, total_w = split(width, nx)
            if window_h * window_w <= budget_pixels:  # the first nx that fits: more only add seams
                candidate = (total_h * total_w, ny * nx, core_h + 2 * margin, core_w + 2 * margin)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
                break
    if best is None:  # nothing fits the budget: the smallest useful square tiles
        return MIN_TILE, MIN_TILE
    return best[2], best[3]


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_inference(
    run: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    image: np.ndarray,
    *,
    noise_map=None,  # (H, W), (K, H, W), or a function of a window: what the network is told
    tile: int | tuple[int, int] = DEFAULT_TILE,
    margin: int = DEFAULT_MARGIN,
    multiple: int = 1,
) -> np.ndarray:
    """Apply ``run`` to overlapping windows of ``image`` and keep each window's centre.

    The image is cut into cores that tile it without overlap; each core is run inside a window
    that extends ``margin`` pixels past it on every side (clipped at the image border), and
    only the core of the result is kept. Core and window origins are multiples of ``multiple``
    (the network's pixel-unshuffle or pooling factor), so every window sees the same sampling
    grid as the whole image. When ``margin`` is at least the network's receptive-field radius,
    the result therefore equals whole-image inference up to float rounding, whatever the tile
    size: no blending, no seams. An image no larger than ``tile`` (a side, or height and width)
    is run whole.

    Raises
    ------
    ValueError
        If ``tile`` leaves no core inside two margins (``tile < 2 * margin + multiple``).
    """
    height, width = image.shape
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    if height <= tile_h and width <= tile_w:
        return run(image, noise_map(image) if callable(noise_map) else noise_map)
    multiple = max(1, int(multiple))
    margin = _round_up(max(0, int(margin)), multiple)
    core_h = (tile_h - 2 * margin) // multiple * multiple
    core_w = (tile_w - 2 * margin) // multiple * multiple
    if min(core_h, core_w) < multiple:
        raise ValueError(f"tile {tile} is too small for a margin of {margin} pixels on each side")
    out = np.empty((height, width), dtype=np.float32)
    for top in range(0, height, core_h):
        for left in range(0, width, core_w):
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, top + core_h + margin), min(width, left + core_w + margin)
            window = (slice(y0, y1), slice(x0, x1))
            if callable(noise_map):  # the condition of this window, made from it
                told = noise_map(image[window])
            else:
                key = (..., *window)  # built first: mypy takes x[(..., *w)] for 3.11-only syntax
                told = None if noise_map is None else noise_map[key]
            result = run(image[window], told)
            bottom, right = min(height, top + core_h), min(width, left + core_w)
            out[top:bottom, left:right] = result[top - y0 : bottom - y0, left - x0 : right - x0]
    return out


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
