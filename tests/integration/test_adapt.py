"""`xraydenoise adapt`: self-supervised fine-tuning on noisy radiographs alone, end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tifffile

from tests.conftest import SAMPLES, run_cli

SPEC = "pg:0.01:3@exp:0.7"


@pytest.fixture(scope="module")
def told_weights(tmp_path_factory) -> Path:
    """A small RDN told the noise, trained for no step: adapt must work from any such network."""
    import torch

    from xraydenoise.models import create_model
    from xraydenoise.weights import save_weights

    torch.manual_seed(0)
    options = {"channels": 8, "blocks": 2, "layers_per_block": 2, "growth": 4, "noise_map": True, "correlation": True, "noise_map_gain": 10.0}
    path = tmp_path_factory.mktemp("start") / "start.safetensors"
    model = create_model("rdn", **options)
    for p in model.core.tail.parameters():  # start close to the identity, as a trained denoiser does
        torch.nn.init.zeros_(p)
    save_weights(model, path, {"name": "start", "architecture": "rdn", "options": options})
    return path


@pytest.fixture(scope="module")
def noisy_folder(tmp_path_factory) -> Path:
    """Five real radiographs with correlated, signal-dependent noise: 8-bit PNG and 16-bit TIFF, of mixed sizes."""
    from xraydenoise.noise import parse_noise

    folder = tmp_path_factory.mktemp("noisy")
    model = parse_noise(SPEC)
    paths = sorted(SAMPLES.glob("*.png"))
    assert len(paths) == 4
    for i, path in enumerate([*paths, paths[0]]):  # the fifth: another part of the first sample
        clean = np.asarray(PIL.Image.open(path).convert("L"), dtype=np.float32) / 255
        clean = clean[: 400 + 40 * i, : 380 + 30 * i] if i < 4 else clean[-420:, -400:]
        noisy = np.clip(model.sample(clean, seed=i), 0, 1)
        if i % 2:
            tifffile.imwrite(folder / f"scan{i}.tif", np.round(noisy * 65535).astype(np.uint16))
        else:
            PIL.Image.fromarray(np.round(noisy * 255).astype(np.uint8)).save(folder / f"scan{i}.png")
    return folder


def one_line_error(result) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    return errors[0]


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, noisy_folder, told_weights):
    out = tmp_path / "out" / "adapted.safetensors"
    empty = tmp_path / "empty"
    empty.mkdir()
    smooth = tmp_path / "smooth"
    smooth.mkdir()
    ramp = np.tile(np.linspace(0.2, 0.8, 300, dtype=np.float32), (300, 1))
    for i in range(3):  # noise-free images: nothing to learn from
        tifffile.imwrite(smooth / f"ramp{i}.tif", np.round(ramp * 65535).astype(np.uint16))
    single = next(noisy_folder.glob("*.png"))
    cases = [
        ((str(empty),), "folder contains no supported image"),
        ((str(tmp_path / "missing"),), "no such file or folder"),
        ((str(single),), "at least 2 images"),
        ((str(smooth),), "noise is too low to learn from"),
        ((str(noisy_folder), "--minutes", "0"), "--minutes must be a number above 0"),
        ((str(noisy_folder), "--minutes", "-3"), "--minutes must be a number above 0"),
        ((str(noisy_folder), "--from", str(tmp_path / "model.pt")), "pickles can run code"),
    ]
    for args, message in cases:
        start = () if "--from" in args else ("--from", str(told_weights))
        result = run_cli("adapt", *args, "-o", out, *start, "--threads", "1")
        assert message in one_line_error(result), (args, result.stdout)
        assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing written, not even half


@pytest.mark.slow
def test_adapted_weights_work_wherever_weights_do(tmp_path, noisy_folder, told_weights):
    out = tmp_path / "adapted.safetensors"
    result = run_cli("adapt", noisy_folder, "-o", out, "--from", told_weights, "--minutes", "0.4", "--threads", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    card = json.loads(out.with_suffix(".json").read_text())
    record = card["adaptation"]
    assert record["images"] == 4 and record["held_out"] == 1 and record["steps"] > 0
    assert record["from"]["name"] == "start" and len(record["from"]["sha256"]) == 64
    assert all("@exp:" in noise for noise in record["estimated_noise"])  # correlated noise found in every image
    said = result.stdout + result.stderr
    assert ("adapted on 4 image(s)" in said) == record["adapted"]
    assert ("kept the starting weights" in said) == (not record["adapted"])
    # denoise with it, export it, use it from Python
    denoised = tmp_path / "denoised"
    result = run_cli("denoise", noisy_folder, "-o", denoised, "--method", out, "--backend", "torch")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(denoised.iterdir())) == 5
    result = run_cli("export", "--weights", out, "-o", tmp_path / "adapted.onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    import xraydenoise

    image = xraydenoise.load_image(next(noisy_folder.glob("*.png")))
    torch_out = xraydenoise.denoise(image, method=str(out), backend="torch").pixels
    onnx_out = xraydenoise.denoise(image, method=str(tmp_path / "adapted.onnx")).pixels
    assert np.abs(torch_out.astype(int) - onnx_out.astype(int)).max() <= 1


@pytest.mark.slow
def test_a_killed_adaptation_resumes_where_it_stopped(tmp_path, noisy_folder, told_weights):
    out = tmp_path / "adapted.safetensors"
    command = [sys.executable, "-m", "xraydenoise.cli", "adapt", str(noisy_folder), "-o", str(out), "--from", str(told_weights),
               "--minutes", "1.2", "--threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out.with_name(f".{out.name}.adapt")
    deadline = time.monotonic() + 240
    while not list(state.glob("*/state.pt")) and time.monotonic() < deadline:
        time.sleep(1)
    assert list(state.glob("*/state.pt")), "no checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written
    started = time.monotonic()
    result = run_cli("adapt", noisy_folder, "-o", out, "--from", told_weights, "--minutes", "1.2", "--threads", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads(out.with_suffix(".json").read_text())["adaptation"]
    # The budget counts the time spent before the kill: the rerun trains for what is left.
    assert record["seconds"] >= 60 and time.monotonic() - started < 72 + 120
    assert not state.exists()


def test_adaptation_that_did_not_help_keeps_the_starting_weights(tmp_path, noisy_folder, told_weights):
    from xraydenoise.training.adapt import adapt
    from xraydenoise.weights import load_state

    # A budget too small for a single step: the held-out score cannot have fallen.
    result = adapt([noisy_folder], out=tmp_path / "kept.safetensors", minutes=1e-6, from_weights=told_weights, progress=False)
    assert not result.adapted and "kept the starting weights" in result.message
    kept, start = load_state(result.weights), load_state(told_weights)
    assert kept.keys() == start.keys() and all(np.array_equal(kept[k].numpy(), start[k].numpy()) for k in kept)
    assert json.loads(result.weights.with_suffix(".json").read_text())["adaptation"]["adapted"] is False
