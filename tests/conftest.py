"""Shared fixtures: real radiographs from the bundled samples and the dev set, tiny networks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "xraydenoise" / "samples"
CHEST = SAMPLES / "nih_00001629_002.png"
HAND = SAMPLES / "fracatlas_IMG0000025.png"

def require(module: str):
    """Import ``module`` or fail: every optional package a test needs is in the dev install
    (``make test`` installs it), so a missing one is a broken setup, never a reason to skip."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} is not installed ({exc}); it is part of the dev install: make setup", pytrace=False)


def require_dev_data() -> Path:
    """The development data set's manifest, or fail: the tests run on real radiographs."""
    from xraydenoise.settings import data_dir

    manifest = data_dir() / "manifest.csv"
    if not manifest.is_file():
        pytest.fail(f"development data not found at {data_dir()} (set XRAYDENOISE_DATA to the folder with manifest.csv)", pytrace=False)
    return manifest


# Tests never pick up a user's cache: every test session gets its own.
os.environ.setdefault("XRAYDENOISE_CACHE", str(Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"xraydenoise-test-cache-{os.getpid()}"))


@pytest.fixture(scope="session")
def chest_png() -> Path:
    return CHEST


@pytest.fixture(scope="session")
def chest_image() -> np.ndarray:
    from xraydenoise.io import load_image

    return load_image(CHEST).to_float()


@pytest.fixture(scope="session")
def chest_crop(chest_image) -> np.ndarray:
    """A 128x128 crop of lung and rib texture from a real chest radiograph."""
    return np.ascontiguousarray(chest_image[400:528, 300:428])


TINY_OPTIONS = {"base_channels": 4, "levels": 2}


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A small U-Net with random weights saved like a real model (safetensors + card)."""
    import torch

    from xraydenoise.models import create_model
    from xraydenoise.weights import save_weights

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(create_model("unet", **TINY_OPTIONS), path, {"name": "tiny", "architecture": "unet", "options": TINY_OPTIONS})
    return path


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run the command line in a subprocess, as a user would."""
    import subprocess

    full_env = dict(os.environ)
    full_env["COLUMNS"] = "400"  # rich must not wrap an error line on a narrow terminal
    full_env["OMP_NUM_THREADS"] = full_env["MKL_NUM_THREADS"] = "1"  # share the 2-core CPU politely
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "xraydenoise.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )
