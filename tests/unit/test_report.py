"""Tests for xraydenoise.evaluation.report: it never trains, and render() shows one named ReportData."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from xraydenoise.errors import ConfigError
from xraydenoise.evaluation import report, tables


def test_the_documented_command_makes_a_comparison_network():
    assert report.make_command("compare-unet", report.TRAINED_DIR) == (
        "xraydenoise train --config configs/compare-unet.yaml && xraydenoise ship runs/compare-unet "
        "--name compare-unet --config configs/compare-unet.yaml --out trained")


def test_a_network_trained_in_stages_is_made_stage_by_stage():
    command = report.make_command("rdn-xray-blind", report.TRAINED_DIR)
    trains = [part.split("--config ")[1] for part in command.split(" && ") if part.startswith("xraydenoise train")]
    assert trains == [f"configs/rdn-xray-blind-stage{i}.yaml" for i in (1, 2, 3)] + ["configs/rdn-xray-blind.yaml"]
    assert command.endswith("--name rdn-xray-blind " + " ".join(f"--config {c}" for c in trains) + " --out trained")


def test_a_missing_network_is_a_one_line_error_naming_the_command(tmp_path):
    with pytest.raises(ConfigError) as caught:
        report.find_networks(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'compare-unet.safetensors'} not found: make it with 'xraydenoise train --config configs/compare-unet.yaml && ")
    assert "loio-nih.safetensors" in message  # the others are named too
    assert not list(tmp_path.iterdir()), "nothing is trained or written"


def test_the_committed_networks_are_found():
    nets = report.find_networks()
    assert set(nets.comparison) == set(report.COMPARISON) and set(nets.loio) == set(report.LOIO)
    assert nets.told.spec == f"told:{nets.shipped.spec}" and nets.told.label == f"{nets.shipped.label}-told"


def test_quick_mode_shrinks_images_not_networks():
    quick, full = report.Plan.for_mode(True), report.Plan.for_mode(False)
    assert quick.size < full.size and quick.images and quick.physics_size == 96 and quick.physics_realizations == 2
    assert not any("train" in name or "models" in name for name in vars(quick))
    assert quick.table3_labels == full.table3_labels[:4] + ["gaussian-10-gauss1", "gaussian-25-gauss1", "poisson-gaussian-a0.01-s3-exp0.7", "gaussian-0"]


def test_importing_the_report_does_not_import_training():
    code = "import sys, xraydenoise.evaluation.report; print(any(m.startswith('xraydenoise.training') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def rows(method: str, level: str, psnrs: list[float], **extra) -> list[dict]:
    return [{"image": f"img{i}", "level": level, "method": method, "psnr": p, "ssim": min(1.0, p / 50), "region": "chest",
             "category": "normal", "age_group": "adult", "modality": "chest", **extra} for i, p in enumerate(psnrs)]


def tiny_report(**changes) -> report.ReportData:
    plan = replace(report.Plan(), levels=("25",), detector_levels=("10@gauss:1",), physics_noises=("10@gauss:1",))
    names = report.MethodNames(shipped="net", shipped_blind=True, shipped_told="net-told", ensemble=None, comparison_blind=(),
                               comparison_noisemap=(), loio={}, loio_reference="compare-unet", previous=None,
                               previous_path="trained/rdn-xray-blind.safetensors", bm3d_estimate="bm3d-estimate")
    main = rows("noisy", "gaussian-25", [20, 21, 22]) + rows("bm3d", "gaussian-25", [30, 31, 32]) + rows("net", "gaussian-25", [31, 31.5, 33])
    level_rows = (rows("noisy", "gaussian-10-gauss1", [28, 28, 29]) + rows("bm3d", "gaussian-10-gauss1", [32, 33, 34])
                  + rows("net", "gaussian-10-gauss1", [28.1, 28.2, 29.1]) + rows("noisy", "gaussian-0", [float("inf")] * 3)
                  + rows("bm3d", "gaussian-0", [float("inf")] * 3) + rows("net", "gaussian-0", [60, 61, 62]))
    detector_rows = rows("bm3d-estimate", "gaussian-10-gauss1", [31, 32, 33]) + rows("net-told", "gaussian-10-gauss1", [28.1, 28.2, 29.1])
    physics = {"size": 96, "realizations": 2, "frequencies": [0.1, 0.25, 0.4], "noises": {"gaussian-10-gauss1": {
        "input": {"mtf": {"0.1": 1.0, "0.25": 0.5, "0.4": 0.2}, "nps": {"0.1": 0.01, "0.25": 0.002, "0.4": 1e-4}},
        "methods": {"bm3d": {"mtf": {"0.1": 0.9, "0.25": 0.45, "0.4": 0.15}, "nps": {"0.1": 0.001, "0.25": 1e-4, "0.4": 1e-6}}}}}}
    data = report.ReportData(plan=plan, names=names, rows=main, level_rows=level_rows, detector_rows=detector_rows, resolution_rows=[],
                             loio_rows=[], timings={}, cards={}, sources=["nih"], data_name="xray", machine="test machine", minutes=0.1,
                             cache_hits=0, cache_scores=0, generated="2026-01-01 00:00 UTC", physics=physics)
    return replace(data, **changes)


def test_render_shows_the_detector_noise_physics_and_adaptation_sections():
    text = report.render(tiny_report())
    assert text == report.render(tiny_report())  # a pure function of its data
    table3 = text.split("## Table 3")[1].split("\n## ")[0]
    header = next(line for line in table3.splitlines() if line.startswith("| method |"))
    assert header.endswith("| gaussian-10-gauss1 (n=3) | gaussian-0 (n=3) |")
    noisy = next(line for line in table3.splitlines() if line.startswith("| noisy |"))
    assert noisy.endswith("| — / 1.0000 |")  # no noise added: the input's PSNR is infinite
    assert "gaussian-0 (vs the identity)" in text and "PSNR vs input 61.00" in text
    detector = text.split("## Detector noise")[1].split("\n## ")[0]
    assert "BM3D (told the estimate)" in detector and "net (told the true noise)" in detector
    assert "`trained/rdn-xray-blind.safetensors` (the previous, white-noise-only model) is not there" in detector
    physics = text.split("## Imaging physics")[1].split("\n## ")[0]
    assert "| gaussian-10-gauss1 | bm3d | 0.450 | 0.150 | 0.1 | 0.01 |" in physics
    assert "No adaptation results yet: `python benchmarks/adapt_loio.py`" in text


def test_render_reads_the_adaptation_benchmark():
    table = tables.AdaptationTable.from_json({"command": "python -m xraydenoise.evaluation.adapt_benchmark --quick", "machine": "m", "minutes": 3,
                                              "rows": [{"institution": "nih", "noise": "10@gauss:1", "images": 8, "method": "adapted",
                                                        "psnr": 33.0, "ssim": 0.9, "n": 4}]})
    text = report.render(tiny_report(adaptation=table))
    section = text.split("## Adaptation")[1].split("\n## ")[0]
    assert "made by `python -m xraydenoise.evaluation.adapt_benchmark --quick` on m in 3 minutes" in section
    assert "| nih | 10@gauss:1 | 8 | adapted | 33.00 | 0.9000 | 4 |" in section


def test_an_unreadable_adaptation_file_is_one_sentence(tmp_path):
    path = tmp_path / "adapt.json"
    assert report.read_adaptation(path) == (None, None)
    path.write_text("{not json")
    table, error = report.read_adaptation(path)
    assert table is None and error.startswith("JSONDecodeError")


def test_render_compares_the_detector_noise_designs_when_trained_has_them():
    assert "designs, `trained/{compare-detector-blind,compare-detector-told}.safetensors`, are not there" in report.render(tiny_report())
    names = replace(tiny_report().names, designs=("compare-detector-blind", "compare-detector-told"))
    designs = (rows("compare-detector-blind", "gaussian-25", [30, 30.5, 31]) + rows("compare-detector-told", "gaussian-25", [31, 31.5, 32])
               + rows("compare-detector-told-told", "gaussian-25", [32, 32.5, 33])
               + rows("compare-detector-blind", "gaussian-10-gauss1", [33, 33.5, 34]))
    cards = {"compare-detector-blind": {"parameters": 150000, "training": {"steps": 4000}},
             "compare-detector-told": {"parameters": 151000, "training": {"steps": 4000}}}
    text = report.render(tiny_report(names=names, design_rows=designs, cards=cards))
    assert "| compare-detector-blind |" not in text.split("## Table 5")[1].split("\n## ")[0]  # not timed: no cost row
    section = text.split("## Detector noise: what the network is told")[1]
    table = section.split("\n## ")[0]
    assert "| model | what it is told | parameters | steps | gaussian-25 | gaussian-10-gauss1 |" in table
    assert "| compare-detector-blind | one network, blind | 0.15 M | 4000 | 30.50 / 0.6100 | 33.50 / 0.6700 |" in table
    assert "| compare-detector-told | one network, told its estimate | 0.15 M | 4000 | 31.50 / 0.6300 |  |" in table
    assert "| compare-detector-told-told | one network, told the true noise | 0.15 M | 4000 | 32.50 / 0.6500 |  |" in table
    assert "| net | two networks routed by the noise, told its estimate | 0.00 M |  | 31.83 / 0.6367 | 28.47 / 0.5693 |" in table
