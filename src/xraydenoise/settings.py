"""Settings read from the environment, each with a default that works from a checkout."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that points to the development data set (a folder with manifest.csv).
DATA_ENV = "XRAYDENOISE_DATA"
#: Environment variable for the cache of classical results and trained models (report, benchmark).
CACHE_ENV = "XRAYDENOISE_CACHE"
#: Largest image (in pixels) that is decoded; bigger ones are refused before decoding.
MAX_PIXELS_ENV = "XRAYDENOISE_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 40_000 * 40_000 // 4  # 400 Mpx: far above any radiograph, far below a bomb

PACKAGE_DIR = Path(__file__).resolve().parent
#: Root of a source checkout (src/xraydenoise -> repo root). Meaningless for a wheel install,
#: which is why every path derived from it can be overridden by an environment variable.
PROJECT_ROOT = PACKAGE_DIR.parent.parent


def data_dir() -> Path:
    """Folder of the development radiographs: ``$XRAYDENOISE_DATA`` or ``../shared/data/xray``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT / ".." / "shared" / "data" / "xray").resolve()


def cache_dir() -> Path:
    """Folder for cached results and exports: ``$XRAYDENOISE_CACHE``, else the user's cache folder
    (``~/.cache/xraydenoise`` on Linux), never the installed package or the checkout."""
    env = os.environ.get(CACHE_ENV)
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("xraydenoise"))
    if path.exists() and not path.is_dir():
        from .errors import ConfigError

        raise ConfigError(f"{path}: the cache folder ({CACHE_ENV}) is a file, not a folder")
    return path.resolve()


def max_pixels() -> int:
    """Pixel limit for decoding (decompression-bomb guard)."""
    env = os.environ.get(MAX_PIXELS_ENV)
    return int(env) if env else DEFAULT_MAX_PIXELS
