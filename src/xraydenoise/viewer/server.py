"""The viewer's HTTP server: standard library only, loopback by default.

Routes (everything else is 404):

* ``/``, ``/viewer.js``, ``/viewer.css``: the page, read once from the package at start-up;
* ``/api/state``: the image list (names, sizes) and the method list;
* ``/api/image/<i>/info``: noise estimate, value range and window presets of image ``i``;
* ``/api/image/<i>/original?level=preview|full`` and
  ``/api/image/<i>/result?method=<m>&level=preview|full``: pixels as little-endian float32,
  row-major, with the size in the ``X-Width`` / ``X-Height`` headers. Values are in the
  image's native units (stored DICOM values, 0..65535 for 16-bit PNG), so the page's
  window/level is exact for 12- and 16-bit data.

``i`` and ``m`` are indices into lists fixed at start-up: no part of a URL ever becomes a
file name, so path traversal is impossible by construction.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import XRayDenoiseError

#: Images with a longer side are first shown downsampled to at most this side (block mean),
#: and denoised at that size, while the full-resolution result is computed.
PREVIEW_SIDE = 1024
#: Memory the cache of loaded images and results may hold, in bytes.
CACHE_BYTES = 768 * 2**20
#: The page's files: URL path -> (file in static/, content type). Nothing else is served.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
    "/viewer.css": ("viewer.css", "text/css; charset=utf-8"),
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_PIXELS_ROUTE = re.compile(r"^/api/image/([0-9]{1,9})/(original|result)$")
_INFO_ROUTE = re.compile(r"^/api/image/([0-9]{1,9})/info$")


class LRUCache:
    """A thread-safe LRU cache bounded by the bytes of the numpy arrays it holds.

    ``get(key, compute)`` computes a missing value once even when several requests ask
    for it at the same time: the others wait on the key's lock instead of repeating the work.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict = OrderedDict()
        self._sizes: dict = {}
        self._lock = threading.Lock()
        self._key_locks: dict = {}

    def _nbytes(self, value) -> int:
        arrays = value if isinstance(value, tuple) else (value,)
        return sum(getattr(a, "nbytes", 0) for a in arrays)

    def get(self, key, compute: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            value = compute()
            with self._lock:
                self._items[key] = value
                self._sizes[key] = self._nbytes(value)
                # Evict the oldest, but never the value just computed: one image larger than
                # the budget must still be shown.
                while sum(self._sizes.values()) > self.max_bytes and len(self._items) > 1:
                    old, _ = self._items.popitem(last=False)
                    del self._sizes[old]
                self._key_locks.pop(key, None)
            return value

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items


def downsample(values: np.ndarray, factor: int) -> np.ndarray:
    """Block mean of ``values`` over ``factor`` x ``factor`` blocks (edges padded by repetition)."""
    if factor <= 1:
        return values.astype(np.float32, copy=False)
    height, width = values.shape
    padded = np.pad(values.astype(np.float64), ((0, -height % factor), (0, -width % factor)), mode="edge")
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.mean(axis=(1, 3)).astype(np.float32)


def preview_factor(height: int, width: int, side: int = PREVIEW_SIDE) -> int:
    """Integer downsampling factor that brings the longer side to at most ``side`` (1: none)."""
    return max(1, math.ceil(max(height, width) / side))


def voi_windows(dataset, max_value: float, photometric: str) -> list[dict]:
    """The DICOM VOI windows of ``dataset`` (WindowCenter/Width), in the image's pixel units.

    The viewer's pixels are stored values (before RescaleSlope/Intercept), offset into the
    unsigned range for signed data and inverted for MONOCHROME1 (see
    :mod:`xraydenoise.io.dicom`); the header's windows are in rescaled units, so each is
    mapped back the same way. Missing or malformed values give no window rather than an error.
    """
    if dataset is None or "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return []

    def as_list(value) -> list[float]:
        """A DS element with one or several values as floats ([] when one is not a number)."""
        items = [value] if isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__iter__") else list(value)
        try:
            return [float(v) for v in items]
        except (TypeError, ValueError):
            return []

    try:  # pydicom converts on access, and a malformed value raises there
        centers, widths = as_list(dataset.WindowCenter), as_list(dataset.WindowWidth)
        explanations = as_list_str(dataset.get("WindowCenterWidthExplanation"))
        slope = float(dataset.get("RescaleSlope", 1) or 1)
        intercept = float(dataset.get("RescaleIntercept", 0) or 0)
        signed = int(dataset.get("PixelRepresentation", 0) or 0) == 1
        bits = int(dataset.get("BitsStored", 0) or 0)
    except (TypeError, ValueError):
        return []
    windows = []
    for index, (center, width) in enumerate(zip(centers, widths)):
        if not (math.isfinite(center) and math.isfinite(width) and width > 0 and slope != 0):
            continue
        stored = (center - intercept) / slope
        if signed and bits:
            stored += 2 ** (bits - 1)
        if photometric == "MONOCHROME1":
            stored = max_value - stored
        name = explanations[index] if index < len(explanations) else f"DICOM window {index + 1}"
        windows.append({"name": name, "center": stored, "width": width / abs(slope)})
    return windows


def as_list_str(value) -> list[str]:
    """A DICOM multi-valued text element as a list of strings ([] when absent)."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        return [str(value)]
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]


def _unit_scale(values: np.ndarray, image) -> tuple[np.ndarray, float, float]:
    """``values`` (native units) mapped to the [0, 1] scale the denoisers take, with the
    (scale, offset) that maps a result back: the same rule as
    :func:`xraydenoise.denoisers.denoise_image` (integer images by ``max_value``, float images
    as they are unless they hold raw units, which are mapped from their own range)."""
    from ..denoisers import FLOAT_UNIT_RANGE

    if not image.is_float:
        return (values / np.float32(image.max_value)).astype(np.float32), float(image.max_value), 0.0
    low, high = float(values.min()), float(values.max())
    if FLOAT_UNIT_RANGE[0] <= low and high <= FLOAT_UNIT_RANGE[1]:
        return values.astype(np.float32), 1.0, 0.0
    span = (high - low) or 1.0
    return ((values - low) / span).astype(np.float32), span, low


@dataclass
class ViewerState:
    """What the server shows: the images (by index) and the methods (by index).

    Parameters
    ----------
    paths : the image files, in the order of the list on the page.
    names : their labels on the page (relative to the folder they were found in).
    methods : method names for :func:`xraydenoise.denoisers.get_denoiser` (names or weights paths).
    labels : the methods' labels on the page.
    preview_side : see :data:`PREVIEW_SIDE`.
    """

    paths: list[Path]
    names: list[str]
    methods: list[str]
    labels: list[str]
    preview_side: int = PREVIEW_SIDE
    cache: LRUCache = field(default_factory=lambda: LRUCache(CACHE_BYTES))
    _sizes: dict = field(default_factory=dict)

    def image(self, index: int):
        from ..io import load_image

        return self.cache.get(("image", index), lambda: load_image(self.paths[index]))

    def size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index``, read once."""
        if index not in self._sizes:
            self._sizes[index] = tuple(self.image(index).pixels.shape)
        return self._sizes[index]

    def factor(self, index: int) -> int:
        return preview_factor(*self.size(index), side=self.preview_side)

    def original(self, index: int, level: str) -> np.ndarray:
        def compute() -> np.ndarray:
            native = self.image(index).pixels.astype(np.float32)
            return native if level == "full" else downsample(native, self.factor(index))

        return self.cache.get(("original", index, level), compute)

    def result(self, index: int, method: int, level: str) -> np.ndarray:
        def compute() -> np.ndarray:
            from ..denoisers import denoise_image, get_denoiser, run_denoiser

            image = self.image(index)
            denoiser = get_denoiser(self.methods[method])
            if level == "full":
                # The same call as `xraydenoise denoise`: what the viewer shows is what gets written.
                return denoise_image(image, denoiser).pixels.astype(np.float32)
            unit, scale, offset = _unit_scale(self.original(index, "preview"), image)
            return (run_denoiser(denoiser, unit, None).astype(np.float64) * scale + offset).astype(np.float32)

        return self.cache.get(("result", index, method, level), compute)

    def info(self, index: int) -> dict:
        def compute() -> dict:
            from ..noise import estimate_gaussian_sigma

            image = self.image(index)
            native = self.original(index, "full")
            unit, scale, _ = _unit_scale(native, image)
            sigma = float(estimate_gaussian_sigma(unit))
            low, high = (float(v) for v in np.percentile(native, [0.5, 99.5]))
            return {
                "name": self.names[index],
                "height": int(native.shape[0]),
                "width": int(native.shape[1]),
                "format": image.format,
                "bit_depth": int(image.bit_depth),
                "max_value": float(image.max_value),
                "min": float(native.min()),
                "max": float(native.max()),
                "auto_window": {"low": low, "high": high},
                "windows": voi_windows(image.dicom, image.max_value, image.photometric),
                # The estimate is on the [0, 1] scale; the page shows it in the image's own grey
                # levels (what a window is set in) and in 8-bit levels (the literature's "sigma 25").
                "noise_sigma": sigma * scale,
                "noise_sigma_8bit": sigma * 255.0,
                "preview_factor": self.factor(index),
            }

        return self.cache.get(("info", index), compute)


class ViewerHandler(BaseHTTPRequestHandler):
    """Serves the page and the API of one :class:`ViewerState` (set on the server)."""

    server_version = "xraydenoise-view"
    protocol_version = "HTTP/1.1"
    server: ViewerServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """Quiet: the terminal shows the URL and errors, not every request."""

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        # The page loads nothing from elsewhere, and no other site may frame it.
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _host_allowed(self) -> bool:
        """On loopback, only requests addressed to loopback: a web page elsewhere cannot reach
        the server through a DNS name rebound to 127.0.0.1 (its Host header names that site)."""
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]", 1)[0]
        return name in LOOPBACK_HOSTS

    def do_HEAD(self) -> None:  # noqa: N802 - the base class's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):  # the page moved on; nothing to answer
            pass
        except XRayDenoiseError as exc:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except Exception as exc:  # noqa: BLE001 - one line to the page, never a traceback on the terminal
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _route(self) -> None:
        if not self._host_allowed():
            self._error(HTTPStatus.FORBIDDEN, "host not allowed")
            return
        url = urlsplit(self.path)
        # The raw path is matched as it came: no decoding, no normalising, so `..` or
        # `%2e%2e` can only ever fail to match.
        path, query = url.path, parse_qs(url.query)
        state: ViewerState = self.server.state
        if path in STATIC_FILES:
            name, content_type = STATIC_FILES[path]
            self._send(HTTPStatus.OK, self.server.static[name], content_type)
            return
        if path == "/api/state":
            self._json(HTTPStatus.OK, {
                "images": [{"index": i, "name": n} for i, n in enumerate(state.names)],
                "methods": [{"index": i, "name": n} for i, n in enumerate(state.labels)],
            })
            return
        match = _INFO_ROUTE.match(path)
        if match:
            index = self._index(match.group(1), len(state.paths))
            if index is not None:
                self._json(HTTPStatus.OK, state.info(index))
            return
        match = _PIXELS_ROUTE.match(path)
        if not match:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        index = self._index(match.group(1), len(state.paths))
        if index is None:
            return
        level = query.get("level", ["full"])[0]
        if level not in ("preview", "full"):
            self._error(HTTPStatus.BAD_REQUEST, "level must be preview or full")
            return
        if match.group(2) == "original":
            array = state.original(index, level)
        else:
            method = self._index(query.get("method", [""])[0], len(state.methods))
            if method is None:
                return
            array = state.result(index, method, level)
        body = np.ascontiguousarray(array, dtype="<f4").tobytes()
        self._send(HTTPStatus.OK, body, "application/octet-stream", {
            "X-Width": str(array.shape[1]),
            "X-Height": str(array.shape[0]),
        })

    def _index(self, text: str, count: int) -> int | None:
        """``text`` as an index below ``count``, or None after answering 404."""
        if text.isdigit() and text.isascii() and int(text) < count:
            return int(text)
        self._error(HTTPStatus.NOT_FOUND, "no such image or method")
        return None


class ViewerServer(ThreadingHTTPServer):
    """A threaded HTTP server holding one :class:`ViewerState` and the page's files."""

    daemon_threads = True

    def __init__(self, state: ViewerState, host: str = "127.0.0.1", port: int = 0) -> None:
        if ":" in host:  # an IPv6 address
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), ViewerHandler)
        self.state = state
        self.loopback_only = host in LOOPBACK_HOSTS
        folder = resources.files("xraydenoise.viewer") / "static"
        self.static = {name: (folder / name).read_bytes() for name, _ in STATIC_FILES.values()}

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"
