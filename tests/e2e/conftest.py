"""Fixtures for the end-to-end bad-input and fuzzing tests: small real radiographs in every
supported format, tiny network weights, and a helper that runs the command line in a
subprocess exactly as a user would.

Everything is small on purpose (crops of a few dozen pixels, a 4-channel U-Net): these tests
check *how* the tool fails, not how well it denoises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "xraydenoise" / "samples"
#: A real 8-bit hand radiograph (FracAtlas), small enough to read fast.
HAND_PNG = SAMPLES / "fracatlas_IMG0002544.png"


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def _run(*args, cwd: Path | None = None, timeout: float = 180) -> CliResult:
    from tests.conftest import run_cli

    proc = run_cli(*args, cwd=cwd, timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def cli():
    """``cli("denoise", a, "-o", out)`` -> :class:`CliResult` of ``python -m xraydenoise.cli``."""
    return _run


@pytest.fixture(scope="session")
def hand_pixels() -> np.ndarray:
    """A 48x40 uint8 crop (bone and soft tissue) of a real radiograph."""
    from xraydenoise.io import load_image

    pixels = load_image(HAND_PNG).pixels
    return np.ascontiguousarray(pixels[200:248, 160:200])


@pytest.fixture(scope="session")
def seed_files(tmp_path_factory, hand_pixels) -> dict[str, bytes]:
    """Valid files of every reader, as bytes: 8- and 16-bit PNG, 16-bit and float TIFF, DICOM,
    all from the same real radiograph (kept small so a fuzz example decodes in milliseconds)."""
    import tifffile

    from xraydenoise.io import Image, save_image

    folder = tmp_path_factory.mktemp("seeds")
    small = hand_pixels[:24, :24]
    wide = (small.astype(np.uint16) * 257 + np.arange(24, dtype=np.uint16)).astype(np.uint16)
    save_image(folder / "hand8.png", Image(small, "png", 255))
    save_image(folder / "hand16.png", Image(wide, "png", 65535))
    tifffile.imwrite(folder / "hand16.tif", wide, photometric="minisblack")
    tifffile.imwrite(folder / "handf32.tif", small.astype(np.float32) / 255, photometric="minisblack")
    save_image(folder / "hand.dcm", Image(wide, "png", 65535))  # a Secondary Capture DICOM
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
