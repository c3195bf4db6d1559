"""Installed as a user installs it: a wheel in a fresh virtual environment, without torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "src" / "xraydenoise" / "samples" / "fracatlas_IMG0002544.png"


@pytest.mark.slow
def test_wheel_without_torch_denoises_with_the_shipped_onnx_model(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", f"{ROOT}[onnx-runtime]"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-2000:]
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0, "torch must not be installed"

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XRAYDENOISE")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), COLUMNS="400")
    site = subprocess.run([str(python), "-c", "import xraydenoise, pathlib; print(pathlib.Path(xraydenoise.__file__).parent)"],
                          capture_output=True, text=True, env=env, cwd=tmp_path).stdout.strip()
    package = Path(site)
    # The wheel carries the shipped weights (safetensors and ONNX), the configs and the samples.
    for relative in ("pretrained/rdn-xray.safetensors", "pretrained/rdn-xray.onnx", "noise/flat_block_patterns.npz",
                     "configs/rdn-xray-detector.yaml", "samples/SOURCES.md"):
        assert (package / relative).is_file(), relative
    before = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)

    cli = venv / "bin" / "xraydenoise"
    version = subprocess.run([str(cli), "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("xraydenoise "), version.stderr
    result = subprocess.run([str(cli), "denoise", str(SAMPLE), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1 denoised" in result.stderr
    assert (tmp_path / "out" / SAMPLE.name).stat().st_size > 1000
    after = sorted(p.relative_to(package) for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert after == before, "nothing may be written into the installed package"
    # (home/ is there only if something was cached: ONNX Runtime with the shipped export needs nothing)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["out", "venv"], "nothing written into the working folder"

    # Training needs the torch extra: one line, exit 2.
    train = subprocess.run([str(cli), "train", "--data", str(tmp_path / "out"), "--out", str(tmp_path / "run")],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert train.returncode == 2 and "torch extra" in train.stderr and "Traceback" not in train.stderr
