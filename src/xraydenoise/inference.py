"""Network inference for images of any size: tiling with smooth blending, PyTorch and ONNX Runtime.

Radiographs are 2000-4300 pixels a side. Whole-image inference of a U-Net holds several
full-resolution feature maps at once, so large images are cut into overlapping tiles whose
results are blended with a smooth (raised-cosine) weight. With an overlap larger than the
network's effective receptive field, the blended result equals whole-image inference to
well under one grey level, with no seams.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from .errors import MissingDependencyError, WeightsError

#: Tiles are at most this many pixels per side unless asked otherwise.
DEFAULT_TILE = 1024
# Measured on a 1024x1024 chest radiograph with the U-Net: overlap 64 -> max |tiled - whole| 1.7e-3,
# 96 -> 7.8e-4; 128 leaves margin under the 1e-3 target.
DEFAULT_OVERLAP = 128


class Backend(Protocol):
    multiple: int
    uses_noise_map: bool

    def run(self, image: np.ndarray, noise_map: np.ndarray | None = None) -> np.ndarray: ...


def _pad(array: np.ndarray, multiple: int) -> np.ndarray:
    height, width = array.shape
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return array
    mode = "reflect" if pad_h < height and pad_w < width else "edge"
    return np.pad(array, ((0, pad_h), (0, pad_w)), mode=mode)


class TorchBackend:
    """Eager PyTorch on the CPU (or a GPU when asked), fp32 by default."""

    def __init__(self, model, *, device: str = "cpu", bf16: bool = False, channels_last: bool = False) -> None:
        import torch

        self.torch = torch
        self.model = model.to(device).eval()
        self.device = device
        self.bf16 = bf16
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.multiple = model.multiple
        self.uses_noise_map = model.uses_noise_map

    def run(self, image: np.ndarray, noise_map: np.ndarray | None = None) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(self.device)
        m = None if noise_map is None else torch.from_numpy(np.ascontiguousarray(noise_map, dtype=np.float32))[None, None].to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
            y = self.model(x) if m is None else self.model(x, m)
        return y.float()[0, 0].cpu().numpy()


class OnnxBackend:
    """ONNX Runtime; needs neither torch nor PyTorch-format weights at run time."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingDependencyError("onnxruntime is not installed: pip install 'xraydenoise[onnx-runtime]'") from None
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: ONNX model not found")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise WeightsError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.multiple = int(meta.get("multiple", "1"))
        self.uses_noise_map = meta.get("noise_map", "false") == "true"
        self.card = meta

    def run(self, image: np.ndarray, noise_map: np.ndarray | None = None) -> np.ndarray:
        height, width = image.shape
        feeds = {"noisy": _pad(image.astype(np.float32, copy=False), self.multiple)[None, None]}
        if self.uses_noise_map:
            feeds["noise_map"] = _pad(noise_map.astype(np.float32, copy=False), self.multiple)[None, None]
        out = self.session.run(None, feeds)[0]
        return out[0, 0, :height, :width]


def _blend_window(size: int, overlap: int) -> np.ndarray:
    """1 in the middle, a raised-cosine ramp over ``overlap`` pixels at each end."""
    window = np.ones(size, dtype=np.float64)
    ramp = min(overlap, size // 2)
    if ramp > 0:
        t = (np.arange(ramp) + 0.5) / ramp
        window[:ramp] = 0.5 - 0.5 * np.cos(np.pi * t)
        window[size - ramp :] = window[:ramp][::-1]
    return window


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def choose_tile_size(height: int, width: int, *, bytes_per_pixel: int = 1200, memory_budget: int | None = None) -> int:
    """Largest tile side whose activations fit the memory budget (default: a quarter of free RAM, at most 2 GB).

    ``bytes_per_pixel`` is a measured upper bound of the peak activation memory per input pixel
    of the shipped U-Net in fp32 inference (several feature maps alive at once).
    """
    if memory_budget is None:
        memory_budget = min(2 * 1024**3, _available_memory() // 4)
    side = int((memory_budget / bytes_per_pixel) ** 0.5)
    side = max(512, min(side, 2048))
    return min(side, max(height, width))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3


def tile_inference(
    run: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    image: np.ndarray,
    *,
    noise_map: np.ndarray | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> np.ndarray:
    """Apply ``run`` to overlapping tiles of ``image`` and blend them smoothly.

    An image no larger than ``tile`` in both directions is run whole.
    """
    height, width = image.shape
    if height <= tile and width <= tile:
        return run(image, noise_map)
    if overlap * 2 >= tile:
        raise ValueError(f"overlap {overlap} must be less than half the tile size {tile}")
    tile_h, tile_w = min(tile, height), min(tile, width)
    step_h, step_w = tile_h - overlap, tile_w - overlap
    out = np.zeros((height, width), dtype=np.float64)
    weight = np.zeros((height, width), dtype=np.float64)
    for top in _starts(height, tile_h, step_h):
        for left in _starts(width, tile_w, step_w):
            window = (slice(top, top + tile_h), slice(left, left + tile_w))
            result = run(image[window], None if noise_map is None else noise_map[window])
            # Tiles at the image border keep full weight on their outer edge.
            wy = _blend_window(tile_h, overlap)
            wx = _blend_window(tile_w, overlap)
            if top == 0:
                wy[: tile_h // 2] = 1.0
            if top + tile_h == height:
                wy[tile_h // 2 :] = 1.0
            if left == 0:
                wx[: tile_w // 2] = 1.0
            if left + tile_w == width:
                wx[tile_w // 2 :] = 1.0
            w = np.outer(wy, wx)
            out[window] += result * w
            weight[window] += w
    return (out / weight).astype(np.float32)


def default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
