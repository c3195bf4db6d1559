"""The command line as a user runs it, in a subprocess, on real radiographs."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CHEST, HAND, require, run_cli
from xraydenoise.io import Image, load_image, save_image
from xraydenoise.metrics import psnr


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_png(tmp_path, name="chest.png", source=CHEST, size=160):
    image = load_image(source)
    crop = Image(np.ascontiguousarray(image.pixels[300 : 300 + size, 300 : 300 + size]), "png", image.max_value)
    return save_image(tmp_path / name, crop)


def test_noise_makes_detector_noise_from_its_text_form_and_denoise_is_told_it(tmp_path):
    from xraydenoise.noise import estimate_noise, parse_noise

    clean = small_png(tmp_path, size=256)
    noisy = tmp_path / "noisy.tif"
    made = run_cli("noise", clean, "-o", noisy, "--noise", "20@gauss:1.2", "--seed", "3")
    assert made.returncode == 0, made.stderr
    assert "gaussian-20-gauss1.2" in made.stderr
    # the same pixels as the model samples in Python, so the text form is the model
    expected = parse_noise("20@gauss:1.2").sample(load_image(clean).to_float(), seed=3)
    assert np.abs(load_image(noisy).to_float() - np.clip(expected, 0, 1)).max() <= 0.5 / 255 + 1e-6  # 8-bit like its input
    assert "@gauss:" in str(estimate_noise(load_image(noisy).to_float()).model)  # read back as correlated noise
    told = run_cli("denoise", noisy, "-o", tmp_path / "out", "--method", "gaussian", "--noise", "20@gauss:1.2")
    assert told.returncode == 0, told.stderr
    both = run_cli("noise", clean, "-o", tmp_path / "x.png", "--noise", "10", "--sigma", "10")
    assert both.returncode == 2 and "exactly one of" in both.stderr


def test_noise_denoise_score_round_trip_on_a_real_png(tmp_path):
    clean = small_png(tmp_path)
    noisy = tmp_path / "noisy" / "chest.png"
    made = run_cli("noise", clean, "-o", noisy, "--sigma", "25", "--seed", "7")
    assert made.returncode == 0, made.stderr
    again = run_cli("noise", clean, "-o", tmp_path / "again.png", "--sigma", "25", "--seed", "7")
    assert again.returncode == 0
    assert np.array_equal(load_image(noisy).pixels, load_image(tmp_path / "again.png").pixels)

    before = sha(noisy)
    result = run_cli("denoise", noisy, "-o", tmp_path / "out", "--method", "nlm", "--sigma", "25")
    assert result.returncode == 0, result.stderr
    assert sha(noisy) == before
    out = load_image(tmp_path / "out" / "chest.png")
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (160, 160)
    ref = load_image(clean).to_float()
    assert psnr(ref, out.to_float()) > psnr(ref, load_image(noisy).to_float()) + 3

    scored = run_cli("score", clean, noisy, tmp_path / "out" / "chest.png")
    assert scored.returncode == 0
    lines = [line for line in scored.stdout.splitlines() if "PSNR" in line]
    assert len(lines) == 2 and "SSIM" in lines[0]


def test_sixteen_bit_dicom_keeps_header_and_bit_depth(tmp_path):
    pydicom = require("pydicom")
    source = load_image(HAND)
    pixels16 = (source.pixels.astype(np.uint16)[:200, :200] * 16)  # 12-bit data in 16-bit words
    dicom_in = tmp_path / "in" / "hand.dcm"
    save_image(dicom_in, Image(pixels16, "dicom", 4095.0), method=None)
    ds = pydicom.dcmread(dicom_in)
    ds.PatientID = "ANON-42"
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.save_as(dicom_in)
    noisy = tmp_path / "noisy" / "hand.dcm"
    assert run_cli("noise", dicom_in, "-o", noisy, "--sigma", "10", "--seed", "1").returncode == 0
    result = run_cli("denoise", tmp_path / "noisy", "-o", tmp_path / "out", "--method", "gaussian")
    assert result.returncode == 0, result.stderr
    out = pydicom.dcmread(tmp_path / "out" / "hand.dcm")
    original = pydicom.dcmread(noisy)
    assert out.PatientID == "ANON-42" and out.BitsStored == 12
    assert out.SOPInstanceUID != original.SOPInstanceUID
    assert out.SeriesInstanceUID != original.SeriesInstanceUID
    assert out.ImageType[0] == "DERIVED"
    assert "gaussian" in out.DerivationDescription
    assert out.pixel_array.dtype == np.uint16 and out.pixel_array.max() <= 4095


def test_network_weights_denoise_a_folder_and_rerun_skips_finished_files(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    small_png(folder / "a", "one.png")
    small_png(folder / "b", "two.png", source=HAND, size=97)
    first = run_cli("denoise", folder, "-o", tmp_path / "out", "--method", tiny_weights)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "out" / "a" / "one.png").exists() and (tmp_path / "out" / "b" / "two.png").exists()
    assert "2 denoised" in first.stderr
    second = run_cli("denoise", folder, "-o", tmp_path / "out", "--method", tiny_weights)
    assert second.returncode == 0 and "2 skipped" in second.stderr


def test_shipped_model_is_the_default_and_denoises_better_than_the_noisy_input(tmp_path):
    clean = small_png(tmp_path, size=256)
    noisy = tmp_path / "noisy.png"
    assert run_cli("noise", clean, "-o", noisy, "--sigma", "25", "--seed", "3").returncode == 0
    result = run_cli("denoise", noisy, "-o", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    ref = load_image(clean).to_float()
    gain = psnr(ref, load_image(tmp_path / "out" / "noisy.png").to_float()) - psnr(ref, load_image(noisy).to_float())
    assert gain > 6


def test_unknown_method_is_one_line_and_writes_nothing(tmp_path):
    png = small_png(tmp_path)
    result = run_cli("denoise", png, "-o", tmp_path / "out", "--method", "magic")
    assert result.returncode == 2
    assert "unknown" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_evaluate_writes_per_image_rows_and_prints_a_summary(tmp_path):
    out = tmp_path / "eval.csv"
    result = run_cli("evaluate", "--methods", "gaussian,median,nlm", "--levels", "25", "--limit", "2", "--size", "128", "-o", out, "--no-cache")
    assert result.returncode == 0, result.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 3
    assert {"image", "region", "category", "age_group", "institution", "level", "method", "psnr", "ssim", "seconds"} <= set(rows[0])
    assert "gaussian-25" in result.stdout and "nlm" in result.stdout
    nlm = np.mean([float(r["psnr"]) for r in rows if r["method"] == "nlm"])
    median = np.mean([float(r["psnr"]) for r in rows if r["method"] == "median"])
    assert nlm > median


def test_demo_writes_figure_table_and_images(tmp_path):
    result = run_cli("demo", "--out", tmp_path / "demo", timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "demo" / "before_after.png").stat().st_size > 10_000
    with (tmp_path / "demo" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    net = [float(r["psnr"]) for r in rows if r["method"] == "network"]
    noisy = [float(r["psnr"]) for r in rows if r["method"] == "noisy"]
    assert len(net) == 4 and min(n - z for n, z in zip(net, noisy)) > 5


def test_readme_python_recipe_scales_12_bit_dicom_as_the_cli_does(tmp_path):
    """The README's Python recipe, run as written, gives the CLI's pixels on a 12-bit DICOM."""
    import re

    from xraydenoise.io import Image, load_image, save_image

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    recipe = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "load_image" in block)
    crop = load_image(CHEST).to_float()[300:428, 300:428]
    source = save_image(tmp_path / "scan.dcm", Image(np.rint(crop * 4095).astype(np.uint16), "png", 4095))
    assert load_image(source).max_value == 4095
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(recipe, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    assert run_cli("denoise", source, "-o", tmp_path / "cli").returncode == 0
    api, cli = load_image(tmp_path / "scan_denoised.dcm"), load_image(tmp_path / "cli" / "scan.dcm")
    # Equal up to one level where float rounding differs between processes (thread counts).
    assert api.max_value == 4095 and np.abs(api.pixels.astype(int) - cli.pixels).max() <= 1
    assert abs(float(api.pixels.mean()) - float(load_image(source).pixels.mean())) < 0.02 * 4095


def test_version_and_a_missing_gpu(tmp_path):
    from xraydenoise import __version__

    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"xraydenoise {__version__}"
    gpu = run_cli("denoise", HAND, "-o", tmp_path / "out", "--device", "cuda:7")
    assert gpu.returncode == 2 and "Traceback" not in gpu.stderr
    assert [line for line in gpu.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in gpu.stderr.splitlines() if "cuda:7" in line)]


@pytest.mark.slow
def test_train_on_a_folder_without_yaml_then_evaluate_all_of_it(tmp_path):
    import json

    from tests.e2e.test_batch_safety import make_scans

    folder = tmp_path / "mine"
    make_scans(folder, 12, size=200)
    run = tmp_path / "run"
    result = run_cli("train", "--data", folder, "--init-weights", "shipped", "--max-steps", "2", "--out", run, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["root"] == str(folder.resolve()) and config["init_weights"].endswith("rdn-xray.safetensors")
    (weights,) = list(run.glob("*.safetensors"))
    assert run_cli("denoise", folder / "scan00.png", "-o", tmp_path / "out", "--method", weights).returncode == 0

    empty = run_cli("evaluate", "--data", folder, "--split", "test", "--methods", "gaussian", "--levels", "25", "--limit", "0",
                    "-o", tmp_path / "test.csv")
    every = run_cli("evaluate", "--data", folder, "--split", "all", "--methods", "gaussian", "--levels", "25",
                    "-o", tmp_path / "all.csv", "--no-cache")
    assert every.returncode == 0, every.stderr
    assert len((tmp_path / "all.csv").read_text().splitlines()) == 1 + 12
    assert empty.returncode in (0, 2)  # a 12-image folder may or may not leave a test split
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    (nothing / "notes.txt").write_text("no images here")
    no_images = run_cli("train", "--data", nothing, "--out", tmp_path / "run2")
    message = f"error: {nothing}: no radiographs found (PNG, TIFF or DICOM, with or without a manifest.csv)"
    assert no_images.returncode == 2 and no_images.stderr.strip() == message
    assert not (tmp_path / "run2").exists()  # nothing written for a run that cannot start
    no_images = run_cli("evaluate", "--data", nothing, "--split", "all", "--methods", "gaussian", "-o", tmp_path / "none.csv")
    assert no_images.returncode == 2 and no_images.stderr.strip() == message
