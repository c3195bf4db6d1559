"""Smoke test of benchmarks/run_benchmarks.py: ``--quick`` runs every part end to end.

The numbers of a --quick run mean nothing (64 and 128 px, one run); what is checked is that
every method and backend is timed, the memory subprocess reports, the files are written
with the documented schema, and ONNX Runtime agrees with PyTorch.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "run_benchmarks.py"
NETWORK_METHODS = {"net-torch-fp32", "net-torch-fast", "net-onnxruntime", "net-default"}
CLASSICAL = {"gaussian", "median", "wavelet", "tv", "nlm", "bm3d"}


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory) -> Path:
    """A small untrained U-Net: the benchmark needs weights, not good ones."""
    require("torch")
    from xraydenoise.models import create_model
    from xraydenoise.weights import save_weights

    options = {"base_channels": 8, "levels": 2}
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    return save_weights(create_model("unet", **options), path, {"name": "tiny", "architecture": "unet", "options": options})


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # about 30-40 s: ONNX export, BM3D and a subprocess
def test_quick_run_writes_complete_results(small_weights, tmp_path):
    require("onnxruntime")
    require("onnx")
    done = run_script("--quick", "--weights", str(small_weights), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]

    # --quick never writes the names of the real results
    assert not (tmp_path / "bench.json").exists()
    report = json.loads((tmp_path / "bench-quick.json").read_text())
    assert (tmp_path / "bench-quick.md").read_text().startswith("# Speed and memory benchmark")

    assert report["schema_version"] == 1 and report["quick"] is True
    for key in ("date_utc", "machine", "versions", "git", "input", "protocol", "network", "results", "skipped", "onnx_vs_torch", "memory", "checks"):
        assert key in report
    assert report["machine"]["torch_threads"] >= 1 and report["machine"]["description"]
    assert report["network"]["name"] == "tiny" and report["network"]["parameters"] > 0

    measured = {(r["method"], r["size"]) for r in report["results"]}
    skipped = {s["method"] for s in report["skipped"]}
    for method in NETWORK_METHODS | (CLASSICAL - skipped):
        assert {(method, 64), (method, 128)} <= measured, method
    bm3d_sizes = {size for method, size in measured if method == "bm3d"}
    for row in report["results"]:
        assert row["median_s"] > 0 and row["megapixels_per_s"] > 0 and len(row["times_s"]) == row["runs"]
        if row["size"] in bm3d_sizes:
            assert row["speedup_vs_bm3d"] > 0

    # Exported and PyTorch outputs of the same network agree (true at any size).
    assert report["onnx_vs_torch"]["max_abs_diff"] <= 1e-4

    memory = report["memory"]
    assert "error" not in memory, memory
    assert memory["size"] == 512 and memory["status"] == "done"
    assert memory["peak_rss_mib"] > memory["rss_after_imports_mib"] > 0

    statuses = {check["status"] for check in report["checks"]}
    assert statuses <= {"PASS", "FAIL", "SKIP"} and len(report["checks"]) >= 4
    printed = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    assert len(printed) == len(report["checks"])


def test_missing_weights_is_a_clear_error(tmp_path):
    done = run_script("--quick", "--skip-memory", "--weights", str(tmp_path / "none.safetensors"), "--out", str(tmp_path))
    assert done.returncode == 2
    assert "pass --weights PATH" in done.stderr
    assert not list(tmp_path.iterdir())


def load_script_module():
    spec = importlib.util.spec_from_file_location("run_benchmarks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_benchmarks"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def timed_loop(bench, methods):
    from rich.progress import Progress

    plan = bench.Plan((64, 128), 512, warmup=1, repeats=2, slow_repeats=1, quick=False)
    with Progress(disable=True) as progress:
        return bench.run_speed(methods, plan, progress)


def test_speed_loop_ratios_against_bm3d():
    bench = load_script_module()
    from xraydenoise.classical import gaussian_denoise

    def slow_bm3d(image, sigma):
        time.sleep(0.02)
        return image

    methods = [bench.Method("gaussian", "classical", gaussian_denoise), bench.Method("bm3d", "classical", slow_bm3d)]
    results, skipped = timed_loop(bench, methods)
    assert skipped == []
    assert [(m.method, m.size, len(m.times_s)) for m in results] == [("gaussian", 64, 2), ("bm3d", 64, 1), ("gaussian", 128, 2), ("bm3d", 128, 1)]
    bench.add_bm3d_ratios(results)
    for m in results:
        # BM3D against itself is 1; a Gaussian blur of 64 or 128 px takes far less than 20 ms.
        assert (m.speedup_vs_bm3d == 1.0) if m.method == "bm3d" else (m.speedup_vs_bm3d > 1)


def test_speed_loop_skips_a_method_whose_dependency_is_missing():
    bench = load_script_module()
    from xraydenoise.classical import gaussian_denoise
    from xraydenoise.errors import MissingDependencyError

    def missing(image, sigma):
        raise MissingDependencyError("bm3d is not installed")

    methods = [bench.Method("gaussian", "classical", gaussian_denoise), bench.Method("bm3d", "classical", missing)]
    results, skipped = timed_loop(bench, methods)
    assert skipped == [{"method": "bm3d", "from_size": 64, "reason": "bm3d is not installed"}]
    assert {m.method for m in results} == {"gaussian"}
    bench.add_bm3d_ratios(results)
    assert all(m.speedup_vs_bm3d is None for m in results)
    assert bench.check_bm3d_speedup(results, 128, 20).status == "SKIP"
