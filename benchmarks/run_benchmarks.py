"""Speed and memory benchmark: classical filters against the network on its three backends.

    make bench          # = .venv/bin/python benchmarks/run_benchmarks.py --out benchmarks/results
    python benchmarks/run_benchmarks.py --quick --weights W.safetensors --out /tmp/bench
    python benchmarks/run_benchmarks.py --only batch --out benchmarks/results   # the batch engines alone
    python benchmarks/run_benchmarks.py --only serve --out benchmarks/results   # the DICOM node alone

What it measures, all in one run on one machine (see benchmarks/README.md for the JSON):

* seconds per image and megapixels per second at 512x512 and 1024x1024 (centre crops of the
  bundled 1024x1024 chest radiograph plus Gaussian noise, sigma 25/255) for each classical
  method and for the network through PyTorch eager fp32, PyTorch with the fastest CPU
  settings, and ONNX Runtime; median of several runs after a warm-up, and each time as a
  multiple of BM3D's at the same size;
* the largest difference between ONNX Runtime's and PyTorch's outputs at 512x512;
* the peak resident memory of denoising a 4096x4096 16-bit PNG the way the CLI does, in a
  fresh subprocess (benchmarks/peak_memory.py);
* the network's parameter count, the machine and the library versions;
* images per second of ``xraydenoise denoise`` on a batch of chest radiographs with
  ``--workers 1``/``2`` and ``--engine ray`` with 1/2 workers, and Ray's start-up overhead
  (:func:`measure_batch_engines`; ``--only batch`` runs this section alone), written to
  ``batch-engines.json``/``.md`` with a sizing estimate for NIH ChestX-ray14;
* instances per minute through a real DICOM node, ``xraydenoise serve`` with its default
  model, on 2048x2048 16-bit DX instances sent by dcmtk's ``storescu`` and forwarded to a
  dcmtk ``storescp`` (:func:`measure_serve`; ``--only serve`` runs this section alone),
  written to ``serve.json``/``.md``.

It then prints PASS/FAIL for the project's targets. A failed target does not change the exit
status: the benchmark reports, it does not gate.

``--quick`` (sizes 64 and 128, one run, 512x512 memory test) only checks that everything
runs; its numbers mean nothing and it writes ``bench-quick.*`` so it never replaces real
results. It leaves the batch and DICOM node sections out (``--only batch --quick`` and
``--only serve --quick`` run small ones).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from io import StringIO
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xraydenoise.classical import CLASSICAL_METHODS
from xraydenoise.errors import MissingDependencyError
from xraydenoise.hardware import cpu_has_bf16, machine_description
from xraydenoise.inference import default_threads
from xraydenoise.io import load_image
from xraydenoise.noise import GaussianNoise
from xraydenoise.settings import PACKAGE_DIR, PROJECT_ROOT
from xraydenoise.weights import shipped_weights

HERE = Path(__file__).resolve().parent
SAMPLE = PACKAGE_DIR / "samples" / "nih_00001629_002.png"
SCHEMA_VERSION = 1

SIZES = (512, 1024)
QUICK_SIZES = (64, 128)
MEMORY_SIZE = 4096
QUICK_MEMORY_SIZE = 512
AGREEMENT_SIZE = 512  # where ONNX Runtime is compared with PyTorch (the largest quick size in --quick)
SIGMA = 25 / 255
SEED = 0

WARMUP = 1  # the first call pays for lazy imports, oneDNN/ORT kernel selection and page faults
REPEATS = 5
SLOW_REPEATS = 3  # BM3D: about 15 s per 1024x1024 image
SLOW_METHODS = {"bm3d"}
# In --quick the warm-up call doubles as a probe: a method slower than this is skipped.
QUICK_PROBE_LIMIT_S = 5.0

#: The default path (what `xraydenoise denoise` runs, the noise estimate included) against BM3D
#: told the true noise: at least 50x at 1024x1024 and 20x at 512x512, in one run.
TARGET_SPEEDUP_VS_BM3D = {1024: 50.0, 512: 20.0}
QUICK_TARGET_SPEEDUP = 20.0
TARGET_PEAK_RSS_MIB = 1024.0  # 1 GiB
ONNX_TOLERANCE = 1e-4
MEMORY_TIMEOUT_S = 1800

stdout = Console()
stderr = Console(stderr=True)


def _display_path(path) -> str:
    """A path relative to the repository when it is inside it, so results name no machine's folders."""
    repo = Path(__file__).resolve().parents[1]
    try:
        return str(Path(path).resolve().relative_to(repo))
    except ValueError:
        return str(path)


def say(text: str) -> None:
    """One line on stdout, never wrapped (logs are grepped for PASS/FAIL)."""
    stdout.print(text, highlight=False, soft_wrap=True)


@dataclass
class Method:
    """One timed thing: a classical filter or one backend of the network."""

    key: str  # the name in the table and the JSON
    kind: str  # "classical" or "network"
    fn: Callable[[np.ndarray, "float | None"], np.ndarray]
    settings: str = ""
    tile: Callable[[int, int], tuple[int, int]] | None = None  # a network's automatic tile (height, width) for an image


@dataclass
class Measurement:
    method: str
    kind: str
    size: int
    tile: tuple[int, int] | None
    times_s: list[float]
    speedup_vs_bm3d: float | None = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def megapixels_per_s(self) -> float:
        return self.size * self.size / 1e6 / self.median_s

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "kind": self.kind,
            "size": self.size,
            "megapixels": round(self.size * self.size / 1e6, 6),
            "tile": self.tile,
            "runs": len(self.times_s),
            "times_s": [round(t, 6) for t in self.times_s],
            "median_s": round(self.median_s, 6),
            "megapixels_per_s": round(self.megapixels_per_s, 4),
            "speedup_vs_bm3d": None if self.speedup_vs_bm3d is None else round(self.speedup_vs_bm3d, 3),
        }


@dataclass
class Check:
    name: str
    target: str
    measured: str
    passed: bool | None  # None: could not be checked (a method was skipped)

    @property
    def status(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]


@dataclass
class Plan:
    sizes: tuple[int, ...]
    memory_size: int
    warmup: int
    repeats: int
    slow_repeats: int
    quick: bool

    def runs(self, method: str) -> int:
        return self.slow_repeats if method in SLOW_METHODS else self.repeats


# --------------------------------------------------------------------------- inputs


def noisy_crop(size: int) -> np.ndarray:
    """Centre crop of the sample plus Gaussian noise, float32 (noisy values may leave [0, 1]).

    A crop, not a resize, keeps the pixel-scale texture of a real radiograph, which is what
    the iterative methods' running time (TV, BM3D block matching) depends on.
    """
    clean = load_image(SAMPLE).to_float()
    height, width = clean.shape
    if size > min(height, width):
        raise ValueError(f"size {size} is larger than the {width}x{height} sample")
    top, left = (height - size) // 2, (width - size) // 2
    clean = np.ascontiguousarray(clean[top : top + size, left : left + size])
    return GaussianNoise(SIGMA)(clean, seed=SEED).astype(np.float32)


# --------------------------------------------------------------------------- methods


def classical_methods() -> list[Method]:
    # A method whose optional dependency is missing (bm3d) is reported as skipped when first called.
    return [Method(key, "classical", fn, "true sigma given") for key, fn in CLASSICAL_METHODS.items()]


def export_onnx_quietly(weights: Path, target: Path) -> float:
    """Export once (seconds taken); the torch exporter prints progress we do not want in the table."""
    from xraydenoise.export import export_onnx

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    start = time.perf_counter()
    with redirect_stdout(StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(weights, target)
    return time.perf_counter() - start


def _blind(network) -> Callable:
    """The network as a user runs it: told nothing, it estimates the noise (the estimate is timed too)."""
    return lambda noisy, sigma: network(noisy, None)


def network_methods(weights: Path, onnx_path: Path, threads: int) -> list[Method]:
    """The network four ways, each on all cores: three backends and the default path."""
    from xraydenoise.denoisers import NetworkDenoiser, fastest_backend

    eager = NetworkDenoiser(weights, backend="torch", threads=threads)
    fast = NetworkDenoiser(weights, backend="torch", threads=threads, fast=True)
    onnx = NetworkDenoiser(onnx_path, backend="onnxruntime", threads=threads)
    default = NetworkDenoiser(weights, threads=threads)  # backend auto: what the CLI runs
    # Read back what the backend actually does: fast=True only uses bf16 where the CPU has it.
    fast_settings = ("bf16 autocast" if fast.backend.bf16 else "fp32") + " + channels_last"
    chosen, bf16 = fastest_backend(weights)
    return [
        Method("net-torch-fp32", "network", _blind(eager), "PyTorch eager, fp32", eager.auto_tile),
        Method("net-torch-fast", "network", _blind(fast), f"PyTorch eager, {fast_settings}", fast.auto_tile),
        Method("net-onnxruntime", "network", _blind(onnx), "ONNX Runtime, fp32, CPUExecutionProvider", onnx.auto_tile),
        Method("net-default", "network", _blind(default),
               f"the default path (backend auto: {chosen}{' bf16' if bf16 else ''}, within 0.01 dB of fp32)", default.auto_tile),
    ]


# --------------------------------------------------------------------------- timing


def time_calls(fn: Callable, noisy: np.ndarray, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(noisy, SIGMA)
        times.append(time.perf_counter() - start)
    return times


def run_speed(methods: list[Method], plan: Plan, progress: Progress) -> tuple[list[Measurement], list[dict]]:
    """Time every method at every size; returns the measurements and the skipped methods.

    Sizes are the outer loop so that the methods compared at one size are measured close
    together in time.
    """
    task = progress.add_task("speed", total=len(plan.sizes) * sum(plan.warmup + plan.runs(m.key) for m in methods))
    results: list[Measurement] = []
    skipped: list[dict] = []
    dropped: set[str] = set()  # skipped at this size and every larger one
    for size in plan.sizes:
        noisy = noisy_crop(size)
        for method in methods:
            runs = plan.runs(method.key)
            if method.key in dropped:
                progress.advance(task, plan.warmup + runs)
                continue
            gc.collect()  # so that collecting an earlier method's garbage does not land in these runs
            progress.update(task, description=f"{method.key} {size}x{size} warm-up")
            try:
                warmup_s = sum(time_calls(method.fn, noisy, plan.warmup))
            except MissingDependencyError as exc:  # bm3d is optional
                warmup_s, reason = None, str(exc)
            if warmup_s is not None and plan.quick and warmup_s > QUICK_PROBE_LIMIT_S:
                reason = f"warm-up took {warmup_s:.1f} s, over the --quick limit of {QUICK_PROBE_LIMIT_S:g} s"
                warmup_s = None
            if warmup_s is None:
                dropped.add(method.key)
                skipped.append({"method": method.key, "from_size": size, "reason": reason})
                progress.advance(task, plan.warmup + runs)
                continue
            progress.advance(task, plan.warmup)
            times = []
            for run in range(runs):
                progress.update(task, description=f"{method.key} {size}x{size} run {run + 1}/{runs}")
                times += time_calls(method.fn, noisy, 1)
                progress.advance(task)
            tile = method.tile(size, size) if method.tile is not None else None
            results.append(Measurement(method.key, method.kind, size, tile, times))
    return results, skipped


def add_bm3d_ratios(results: list[Measurement]) -> None:
    """speedup_vs_bm3d = BM3D's median time / this method's, at the same size (BM3D itself: 1)."""
    bm3d = {m.size: m.median_s for m in results if m.method == "bm3d"}
    for m in results:
        if m.size in bm3d:
            m.speedup_vs_bm3d = bm3d[m.size] / m.median_s


def onnx_agreement(methods: list[Method], size: int) -> dict:
    """Largest absolute difference between ONNX Runtime and PyTorch eager fp32 on one image."""
    by_key = {m.key: m.fn for m in methods}
    noisy = noisy_crop(size)
    torch_out = by_key["net-torch-fp32"](noisy, SIGMA)
    onnx_out = by_key["net-onnxruntime"](noisy, SIGMA)
    diff = float(np.max(np.abs(torch_out.astype(np.float64) - onnx_out.astype(np.float64))))
    return {"size": size, "max_abs_diff": diff, "tolerance": ONNX_TOLERANCE, "pass": diff <= ONNX_TOLERANCE}


# --------------------------------------------------------------------------- memory


def measure_memory(weights: Path, size: int, workdir: Path) -> dict:
    """Peak RSS of denoising a size x size 16-bit PNG, in a fresh ``peak_memory.py`` process."""
    from peak_memory import synthesize_image  # benchmarks/ is sys.path[0] when run as a script

    image = synthesize_image(SAMPLE, workdir / f"input-{size}.png", size, sigma=SIGMA, seed=SEED)
    command = [sys.executable, str(HERE / "peak_memory.py"), str(image), "--weights", str(weights), "--out", str(workdir / f"output-{size}.png")]
    result = {"size": size, "input": f"{size}x{size} uint16 PNG, resized sample plus noise sigma 25/255",
              "path": "batch.process_one (the CLI's denoise), default tile selection"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=MEMORY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {**result, "error": f"timed out after {MEMORY_TIMEOUT_S} s"}
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        return {**result, "error": f"exit status {done.returncode}: {tail}"}
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, **measured}


# --------------------------------------------------------------------------- checks


def check_bm3d_speedup(results: list[Measurement], size: int, times: float) -> Check:
    """The default path (blind, estimate included) at least ``times`` x faster than BM3D at ``size``."""
    at_size = {m.method: m for m in results if m.size == size}
    name = f"network, default path, >= {times:g}x faster than BM3D at {size}x{size}"
    target = f">= {times:g}x"
    default, bm3d = at_size.get("net-default"), at_size.get("bm3d")
    if default is None or bm3d is None:
        return Check(name, target, "not measured", None)
    speedup = bm3d.median_s / default.median_s
    measured = f"{speedup:.1f}x ({default.median_s:.3f} s vs bm3d {bm3d.median_s:.3f} s)"
    return Check(name, target, measured, speedup >= times)


def check_onnx_vs_eager(results: list[Measurement], size: int) -> Check:
    at_size = {m.method: m for m in results if m.size == size}
    eager, onnx = at_size.get("net-torch-fp32"), at_size.get("net-onnxruntime")
    name, target = f"ONNX Runtime at least as fast as PyTorch eager at {size}x{size}", "onnx <= eager"
    if not (eager and onnx):
        return Check(name, target, "not measured", None)
    measured = f"{onnx.median_s:.4f} s vs {eager.median_s:.4f} s ({eager.median_s / onnx.median_s:.2f}x)"
    return Check(name, target, measured, onnx.median_s <= eager.median_s)


def evaluate_checks(results: list[Measurement], agreement: dict, memory: dict | None, sizes: tuple[int, ...]) -> list[Check]:
    targets = TARGET_SPEEDUP_VS_BM3D if all(size in TARGET_SPEEDUP_VS_BM3D for size in sizes) else {max(sizes): QUICK_TARGET_SPEEDUP}
    checks = [check_bm3d_speedup(results, size, times) for size, times in sorted(targets.items(), reverse=True)]
    checks += [check_onnx_vs_eager(results, size) for size in sizes]
    checks.append(
        Check(
            f"ONNX Runtime output matches PyTorch at {agreement['size']}x{agreement['size']}",
            f"max abs diff <= {ONNX_TOLERANCE:g}",
            f"{agreement['max_abs_diff']:.2e}",
            agreement["pass"],
        )
    )
    name, target = "peak RSS denoising a large 16-bit image", f"< {TARGET_PEAK_RSS_MIB:g} MiB"
    if memory is None:
        checks.append(Check(name, target, "not measured (--skip-memory)", None))
    else:
        name = f"peak RSS denoising {memory['size']}x{memory['size']} 16-bit"
        if "error" in memory:
            checks.append(Check(name, target, f"error: {memory['error']}", False))
        else:
            peak = memory["peak_rss_mib"]
            measured = f"{peak:.0f} MiB (baseline after imports {memory['rss_after_imports_mib']:.0f} MiB)"
            checks.append(Check(name, target, measured, peak < TARGET_PEAK_RSS_MIB))
    return checks


# --------------------------------------------------------------------------- environment


def library_versions() -> dict:
    names = ["xraydenoise", "numpy", "scipy", "scikit-image", "PyWavelets", "bm3d", "torch", "onnxruntime", "onnx", "onnxscript"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def repo_path(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (results are compared across machines)."""
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def git_state() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info(threads: int) -> dict:
    import torch

    return {
        "description": machine_description(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cores_used": threads,
        "cpu_has_bf16": cpu_has_bf16(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "onnxruntime_threads": threads,
        # Another busy process makes every time longer; the load at start says whether one ran.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def network_info(weights: Path, onnx_export_s: float, methods: list[Method]) -> dict:
    from xraydenoise.models import count_parameters
    from xraydenoise.weights import load_model

    model = load_model(weights)
    card = model.card
    return {
        "weights": _display_path(weights),
        "name": card.name,
        "architecture": card.architecture,
        "options": card.options,
        "parameters": count_parameters(model),
        "backends": {m.key: m.settings for m in methods if m.kind == "network"},
        "onnx_export_s": round(onnx_export_s, 3),
    }


# --------------------------------------------------------------------------- output


def tile_text(tile) -> str:
    """A tile (height, width) as ``HxW`` (a JSON round trip makes it a list)."""
    return "x".join(str(side) for side in tile) if isinstance(tile, (list, tuple)) else str(tile)


def significant(x: float, digits: int = 3) -> str:
    """3 significant digits without exponents for numbers >= 1000 (0.00123, 45.6, 10085)."""
    return f"{x:.0f}" if abs(x) >= 10**digits else f"{x:.{digits}g}"


def results_table(results: list[Measurement], methods: list[Method], sizes: tuple[int, ...]) -> tuple[list[str], list[list[str]]]:
    """Markdown layout: one row per measured method; time, Mpx/s and speed-up over BM3D per size."""
    header = ["method", "settings"]
    for size in sizes:
        header += [f"{size}² s", f"{size}² Mpx/s", f"{size}² ×BM3D"]
    cell = {(m.method, m.size): m for m in results}
    rows = []
    for method in methods:
        if not any(key == method.key for key, _ in cell):
            continue
        row = [method.key, method.settings]
        for size in sizes:
            m = cell.get((method.key, size))
            if m is None:
                row += ["-", "-", "-"]
            else:
                ratio = "-" if m.speedup_vs_bm3d is None else significant(m.speedup_vs_bm3d)
                row += [significant(m.median_s), significant(m.megapixels_per_s), ratio]
        rows.append(row)
    return header, rows


def print_report(results: list[Measurement], checks: list[Check], report: dict) -> None:
    # One row per method and size (not the Markdown's wide layout), so it fits 80 columns.
    table = Table(title="Median time per image (×BM3D: times faster than BM3D)")
    for i, name in enumerate(["method", "size", "s / image", "Mpx/s", "×BM3D"]):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for size in report["protocol"]["sizes"]:
        for m in (m for m in results if m.size == size):
            ratio = "-" if m.speedup_vs_bm3d is None else significant(m.speedup_vs_bm3d)
            table.add_row(m.method, f"{size}²", significant(m.median_s), significant(m.megapixels_per_s), ratio)
        table.add_section()
    stdout.print(table)
    for key, settings in report["network"]["backends"].items():
        say(f"{key}: {settings}")
    network = report["network"]
    say(f"network {network['name']!r}: {network['parameters']:,} parameters; ONNX export took {network['onnx_export_s']:.1f} s")
    memory = report.get("memory")
    if memory and "error" not in memory:
        say(
            f"memory {memory['size']}x{memory['size']} uint16: peak {memory['peak_rss_mib']:.0f} MiB, "
            f"after imports {memory['rss_after_imports_mib']:.0f} MiB, after model {memory['rss_after_model_mib']:.0f} MiB, "
            f"tiles {tile_text(memory['tile'])}, {memory['seconds']:.1f} s"
        )
    for skipped in report["skipped"]:
        say(f"skipped {skipped['method']} from {skipped['from_size']}x{skipped['from_size']} on: {skipped['reason']}")
    if report["quick"]:
        say("--quick: tiny sizes and one run; the checks below only show that they run.")
    for check in checks:
        say(f"{check.status}  {check.name}: {check.measured} (target {check.target})")


def markdown(results: list[Measurement], methods: list[Method], checks: list[Check], report: dict) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    header, rows = results_table(results, methods, tuple(report["protocol"]["sizes"]))

    machine, net, protocol = report["machine"], report["network"], report["protocol"]
    out = [
        "# Speed and memory benchmark" + (" (--quick: not meaningful)" if report["quick"] else ""),
        "",
        f"{report['date_utc']} on {machine['description']}, {machine['cores_used']} threads "
        f"(torch {report['versions']['torch']}, onnxruntime {report['versions']['onnxruntime']}, bm3d {report['versions']['bm3d']}); "
        f"load average at start {machine['load_average_at_start'][0]}.",
        f"Input: centre crops of `{Path(report['input']['image']).name}` plus Gaussian noise sigma 25/255. "
        f"Median of {protocol['repeats']} run(s) ({protocol['slow_repeats']} for BM3D) after "
        f"{protocol['warmup']} warm-up. ×BM3D: how many times faster than BM3D at the same size.",
        f"Network: `{net['name']}` ({net['architecture']}, {net['parameters']:,} parameters).",
        "",
        line(header),
        line(["---"] * 2 + ["---:"] * (len(header) - 2)),
        *[line(row) for row in rows],
        "",
        *[f"Skipped {s['method']} from {s['from_size']}x{s['from_size']} on: {s['reason']}." for s in report["skipped"]],
        "",
    ]
    memory = report.get("memory")
    if memory and "error" not in memory:
        out += [
            f"Peak RSS denoising a {memory['size']}x{memory['size']} 16-bit PNG through the CLI path (fresh process, tiles {tile_text(memory['tile'])}): "
            f"**{memory['peak_rss_mib']:.0f} MiB**; {memory['rss_after_imports_mib']:.0f} MiB after the imports, "
            f"{memory['rss_after_model_mib']:.0f} MiB after loading the model ({memory['seconds']:.1f} s).",
            "",
        ]
    agreement = report["onnx_vs_torch"]
    out += [f"ONNX Runtime vs PyTorch eager fp32 at {agreement['size']}x{agreement['size']}: max abs diff {agreement['max_abs_diff']:.2e}.", ""]
    out += ["| target | measured | result |", "| --- | --- | --- |"]
    out += [line([f"{c.name} ({c.target})", c.measured, c.status]) for c in checks]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- batch engines


BATCH_IMAGES = 16
QUICK_BATCH_IMAGES = 3
QUICK_BATCH_SIZE = 256
#: (engine, workers): the local engine's worker processes and Ray actors on a local cluster.
BATCH_CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))
#: The archive of the sizing example: NIH ChestX-ray14, 1024x1024 8-bit PNGs (Wang et al. 2017).
SIZING_ARCHIVE = {"name": "NIH ChestX-ray14", "images": 112_120, "size": "1024x1024", "hours": 1.0}
BATCH_TIMEOUT_S = 1800
_SUMMARY = "denoised, 0 skipped (already done), 0 failed"


def batch_inputs(workdir: Path, count: int, quick: bool) -> tuple[list[Path], str]:
    """``count`` radiographs for the batch runs: the development set's NIH chest images
    (1024x1024, as in ChestX-ray14) where present, else copies of the bundled one; --quick:
    256x256 centre crops of the bundled image."""
    from xraydenoise.io import Image, save_image
    from xraydenoise.settings import data_dir

    if quick:
        pixels = load_image(SAMPLE).pixels
        top = (pixels.shape[0] - QUICK_BATCH_SIZE) // 2
        crop = np.ascontiguousarray(pixels[top : top + QUICK_BATCH_SIZE, top : top + QUICK_BATCH_SIZE])
        paths = [save_image(workdir / "batch-in" / f"crop{i}.png", Image(crop, "png", 255.0)) for i in range(count)]
        return paths, f"{count} copies of a {QUICK_BATCH_SIZE}x{QUICK_BATCH_SIZE} crop of {repo_path(SAMPLE)}"
    try:
        nih = sorted((data_dir() / "nih").glob("*.png"))[:count]
    except Exception:  # noqa: BLE001 - no data set: the bundled image
        nih = []
    if len(nih) == count:
        return nih, f"the first {count} NIH ChestX-ray14 images of the development set (1024x1024 8-bit PNG)"
    folder = workdir / "batch-in"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paths.append(folder / f"nih{i}.png")
        paths[-1].write_bytes(SAMPLE.read_bytes())
    return paths, f"{count} copies of {repo_path(SAMPLE)} (1024x1024 8-bit PNG; no development set found)"


def time_denoise(inputs: list[Path], out: Path, extra: list[str]) -> float:
    """Wall seconds of one ``xraydenoise denoise`` command in a fresh process (imports, model
    loading and, for Ray, the local cluster's start and stop included)."""
    command = [sys.executable, "-m", "xraydenoise.cli", "denoise", *map(str, inputs), "-o", str(out), *extra]
    env = dict(os.environ, COLUMNS="200")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=BATCH_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or f"{len(inputs)} {_SUMMARY}" not in done.stderr:
        tail = "\n".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(command[3:])}: exit status {done.returncode}: {tail}")
    return elapsed


def measure_batch_engines(workdir: Path, count: int, quick: bool, progress: Progress) -> dict:
    """Images per second of ``denoise`` with --workers 1/2 and --engine ray with 1/2 workers.

    Each configuration runs twice through the command line, on 1 image and on ``count``
    images, into fresh folders: the difference is the steady cost of ``count - 1`` images
    (images/s), the rest the start-up (Python, imports, model; for Ray also the local
    cluster and its actors). ``ray_overhead_s`` is Ray's start-up minus the local engine's
    with as many workers. Every run uses the CLI's defaults (the shipped network, backend
    auto, all threads); a GPU, when there is one, is shared by the Ray actors.
    """
    from xraydenoise.hardware import gpu_count

    load_before = [round(x, 2) for x in os.getloadavg()]
    inputs, description = batch_inputs(workdir, count, quick)
    gpus = gpu_count()
    task = progress.add_task("batch engines", total=2 * len(BATCH_CONFIGS))
    rows = []
    for engine, workers in BATCH_CONFIGS:
        extra = ["--workers", str(workers)]
        if engine == "ray":
            extra += ["--engine", "ray"] + (["--gpus-per-worker", f"{min(1.0, gpus / workers):g}"] if gpus else [])
        label = f"{engine} x{workers}"
        command = f"xraydenoise denoise IMAGES -o OUT {' '.join(extra)}"
        try:
            progress.update(task, description=f"batch: {label}, 1 image")
            one = time_denoise(inputs[:1], workdir / f"batch-{engine}-{workers}-one", extra)
            progress.advance(task)
            progress.update(task, description=f"batch: {label}, {count} images")
            many = time_denoise(inputs, workdir / f"batch-{engine}-{workers}-many", extra)
            progress.advance(task)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:  # e.g. ray not installed: reported, the rest still runs
            rows.append({"engine": engine, "workers": workers, "command": command, "error": str(exc)})
            continue
        per_image = (many - one) / (count - 1) if many > one else None  # seconds per image, steady
        rows.append({
            "engine": engine,
            "workers": workers,
            "command": command,
            "one_image_s": round(one, 3),
            "batch_images": count,
            "batch_s": round(many, 3),
            "per_image_s": None if per_image is None else round(per_image, 4),
            "images_per_s": None if per_image is None else round(1 / per_image, 4),
            "end_to_end_images_per_s": round(count / many, 4),
            "startup_s": round(one - (per_image or 0.0), 3),
            # one worker's seconds per image: what sizes a cluster of such workers
            "worker_s_per_image": None if per_image is None else round(per_image * workers, 4),
        })
    local_startup = {r["workers"]: r["startup_s"] for r in rows if r["engine"] == "local" and "error" not in r}
    for row in rows:
        if row["engine"] == "ray" and "error" not in row and row["workers"] in local_startup:
            row["ray_overhead_s"] = round(row["startup_s"] - local_startup[row["workers"]], 3)
    return {
        "inputs": description,
        "method": "network (the CLI's default: shipped model, backend auto)",
        "device": "cuda" if gpus else "cpu",
        "gpus": gpus,
        "images": count,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "configs": rows,
        "sizing": sizing_estimate(rows),
    }


def sizing_estimate(rows: list[dict]) -> dict | None:
    """How many workers (and machines like this one) denoise the sizing archive in its hours
    at the measured cost, if scaling stays linear: an estimate, not a measurement."""
    ray1 = next((r for r in rows if r["engine"] == "ray" and r["workers"] == 1 and "error" not in r), None)
    best = max((r for r in rows if r["engine"] == "ray" and r.get("images_per_s")), key=lambda r: r["images_per_s"], default=None)
    if not ray1 or not ray1["worker_s_per_image"] or not best:
        return None
    images, seconds = SIZING_ARCHIVE["images"], SIZING_ARCHIVE["hours"] * 3600
    worker_hours = images * ray1["worker_s_per_image"] / 3600
    return {
        "estimate": True,
        "archive": SIZING_ARCHIVE,
        "worker_s_per_image": ray1["worker_s_per_image"],
        "worker_hours": round(worker_hours, 2),
        "workers_needed": math.ceil(images * ray1["worker_s_per_image"] / seconds),
        "machine_images_per_s": best["images_per_s"],
        "machine_workers": best["workers"],
        "machines_needed": math.ceil(images / (best["images_per_s"] * seconds)),
        "assumes": "linear scaling over nodes, inputs and outputs on a shared file system that keeps up, "
                   "images of this size, Ray's start-up (once per run) not counted",
    }


def batch_markdown(batch: dict, machine: str, date: str) -> str:
    def cell(value, digits: int = 3) -> str:
        return "-" if value is None else significant(value, digits)

    out = [
        "# Batch engines: local worker processes and Ray actors",
        "",
        f"{date} on {machine} ({batch['device']}); load average before: {batch['load_average_before'][0]}, "
        f"after: {batch['load_average_after'][0]} (its own runs included).",
        f"Inputs: {batch['inputs']}. Method: {batch['method']}. Each row is two `xraydenoise denoise` runs in fresh "
        f"processes, 1 image and {batch['images']} images: images/s from their difference (steady), "
        "start-up = the 1-image run minus one image (Python, imports, model; for Ray also starting and stopping "
        "a local cluster and its actors).",
        "",
        *([f"The machine was busy (load average {batch['load_average_before'][0]} on {os.cpu_count()} cores): every time is "
           "longer, and the engines less comparable, than on an idle machine.", ""] if batch["load_average_before"][0] > 0.5 else []),
        "| engine | workers | images/s (steady) | s per image per worker | end-to-end images/s | start-up s | Ray overhead s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in batch["configs"]:
        if "error" in r:
            out.append(f"| {r['engine']} | {r['workers']} | error: {r['error']} | | | | |")
            continue
        out.append(f"| {r['engine']} | {r['workers']} | {cell(r['images_per_s'])} | {cell(r['worker_s_per_image'])} | "
                   f"{cell(r['end_to_end_images_per_s'])} | {cell(r['startup_s'])} | {cell(r.get('ray_overhead_s'))} |")
    sizing = batch["sizing"]
    out.append("")
    if sizing:
        archive = sizing["archive"]
        out += [
            f"**Estimate, not a measurement** ({sizing['assumes']}): {archive['name']} ({archive['images']:,} images, "
            f"{archive['size']}) at {sizing['worker_s_per_image']:.3g} s per image per Ray worker is "
            f"{sizing['worker_hours']:,.0f} worker-hours: {sizing['workers_needed']:,} such workers for it in "
            f"{archive['hours']:g} hour, or {sizing['machines_needed']:,} machines like this one "
            f"({sizing['machine_images_per_s']:.3g} images/s with {sizing['machine_workers']} Ray "
            f"worker{'s' if sizing['machine_workers'] > 1 else ''}).",
            "",
        ]
    return "\n".join(out) + "\n"


def print_batch(batch: dict) -> None:
    for r in batch["configs"]:
        if "error" in r:
            say(f"batch {r['engine']} x{r['workers']}: error: {r['error']}")
            continue
        rate = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.3g}"
        overhead = f", Ray overhead {r['ray_overhead_s']:.1f} s" if "ray_overhead_s" in r else ""
        say(f"batch {r['engine']} x{r['workers']}: {rate} images/s steady, {r['end_to_end_images_per_s']:.3g} end to end, "
            f"start-up {r['startup_s']:.1f} s{overhead}")
    if batch["sizing"]:
        s = batch["sizing"]
        say(f"estimate: {s['archive']['name']} ({s['archive']['images']:,} images) in {s['archive']['hours']:g} h needs "
            f"{s['workers_needed']:,} Ray workers at {s['worker_s_per_image']:.3g} s per image, or {s['machines_needed']:,} machines like this")


def write_section(section: dict, markdown: str, out: Path, stem: str, machine: str, date: str) -> None:
    """One section's results as ``stem.json`` (with machine, date and git state) and ``stem.md``."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"schema_version": SCHEMA_VERSION, "date_utc": date, "machine": machine, "git": git_state(), **section}
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown)


def write_batch(batch: dict, out: Path, stem: str, machine: str, date: str) -> None:
    write_section(batch, batch_markdown(batch, machine, date), out, stem, machine, date)


def run_batch_section(args: argparse.Namespace) -> int:
    """``--only batch``: the batch-engine section alone; writes batch-engines.json and .md
    (batch-engines-quick.* with --quick) and leaves bench.* as they are."""
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_description()
    count = args.batch_images or (QUICK_BATCH_IMAGES if args.quick else BATCH_IMAGES)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with tempfile.TemporaryDirectory(prefix="xraydenoise-bench-") as tmp, Progress(*columns, console=stderr) as progress:
        batch = measure_batch_engines(Path(tmp), count, args.quick, progress)
    stem = "batch-engines-quick" if args.quick else "batch-engines"
    write_batch(batch, args.out, stem, machine, date)
    print_batch(batch)
    say(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


# --------------------------------------------------------------------------- DICOM node


SERVE_INSTANCES = 8
SERVE_SIZE = 2048
QUICK_SERVE_INSTANCES = 2
QUICK_SERVE_SIZE = 256
SERVE_TIMEOUT_S = 3600  # from the first send to the last derived instance, on a loaded 2-core machine
NODE_START_TIMEOUT_S = 300
SERVE_NODE_AET, SERVE_DESTINATION_AET, SERVE_MODALITY_AET = "XRAYDENOISE", "STORESCP", "MODALITY"
DCMTK_HINT = "run tests/setup_system_deps.sh (Debian package dcmtk)"


def _dcmtk_tool(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: {DCMTK_HINT}")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_inputs(folder: Path, count: int, size: int) -> tuple[list[Path], str]:
    """``count`` 16-bit DX instances of ``size`` x ``size``, each in its own study: NIH chest
    radiographs of the development set (the bundled one without it), upsampled bicubically to
    ``size`` and spread over 16 bits, with a little Gaussian noise, written with the tests' DX
    header (:func:`tests.dicom_corpus.dx12_dataset`)."""
    import PIL.Image
    import pydicom
    from pydicom.uid import generate_uid

    from xraydenoise.settings import data_dir

    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    from tests.dicom_corpus import dx12_dataset

    try:
        sources = sorted((data_dir() / "nih").glob("*.png"))[:count]
    except Exception:  # noqa: BLE001 - no data set: the bundled image
        sources = []
    described = f"NIH ChestX-ray14 images of the development set ({len(sources)} different ones)"
    if not sources:
        sources, described = [SAMPLE], f"the bundled {repo_path(SAMPLE)}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    paths = []
    for i in range(count):
        grey = PIL.Image.open(sources[i % len(sources)]).convert("L")
        up = np.asarray(PIL.Image.fromarray(np.asarray(grey, np.float32)).resize((size, size), PIL.Image.BICUBIC))
        values = np.clip(np.rint(up * 257.0 + rng.normal(0, 400, up.shape)), 0, 65535).astype(np.uint16)
        ds = dx12_dataset(values)
        ds.BitsStored, ds.HighBit = 16, 15
        ds.WindowCenter, ds.WindowWidth = "32768", "65536"
        del ds.PixelPaddingValue  # no padding: every pixel is denoised
        ds.PatientID, ds.PatientName = f"BENCH-{i}", f"Bench^Patient{i}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        paths.append(folder / f"dx{i:02d}.dcm")
        pydicom.dcmwrite(paths[-1], ds, enforce_file_format=True)
    return paths, (f"{count} DX instances, {size}x{size}, 16 bits stored (Explicit VR Little Endian, "
                   f"{size * size * 2 / 2**20:.3g} MiB of pixels each), from {described} resized bicubically")


def _status(port: int) -> dict | None:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def measure_serve(workdir: Path, count: int, size: int, progress: Progress) -> dict:
    """Instances per minute through a real node: dcmtk ``storescu`` sends ``count`` DX instances
    to ``xraydenoise serve`` (default method, the shipped network), which forwards each derived
    instance to a dcmtk ``storescp``, all on loopback ports.

    The clock starts when ``storescu`` starts (the first send) and stops when the last derived
    instance is on the destination's disk (the modification time of its file). The node is
    started, and has loaded its model, before the clock starts; its start-up is reported apart.

    Raises
    ------
    RuntimeError
        A dcmtk tool is missing, the node does not start, or not every instance arrives.
    """
    import pydicom

    storescp, storescu = _dcmtk_tool("storescp"), _dcmtk_tool("storescu")
    load_before = [round(x, 2) for x in os.getloadavg()]
    task = progress.add_task(f"serve: writing {count} DX instances of {size}x{size}", total=count + 2)
    inputs, description = serve_inputs(workdir / "serve-in", count, size)
    progress.advance(task)
    received, queue, logs = workdir / "serve-received", workdir / "serve-queue", workdir / "serve-logs"
    received.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    destination_port, node_port, status_port = _free_port(), _free_port(), _free_port()
    command = ["serve", "--aet", SERVE_NODE_AET, "--host", "127.0.0.1", "--port", str(node_port),
               "--forward", f"{SERVE_DESTINATION_AET}@127.0.0.1:{destination_port}", "--queue", str(queue),
               "--allow", SERVE_MODALITY_AET, "--status-port", str(status_port)]
    node_log = logs / "node.log"
    with open(logs / "storescp.log", "wb") as scp_log, open(node_log, "wb") as log:
        scp = subprocess.Popen([storescp, "-aet", SERVE_DESTINATION_AET, "-od", str(received), str(destination_port)],
                               stdout=scp_log, stderr=subprocess.STDOUT)
        node = subprocess.Popen([sys.executable, "-m", "xraydenoise.cli", *command], stdout=log, stderr=subprocess.STDOUT)
    try:
        progress.update(task, description="serve: starting the node (imports, model)")
        started = time.perf_counter()
        while _status(status_port) is None or "listening as" not in node_log.read_text(errors="replace"):
            if node.poll() is not None or time.perf_counter() - started > NODE_START_TIMEOUT_S:
                raise RuntimeError(f"the node did not start: {node_log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.2)
        node_startup = time.perf_counter() - started
        progress.advance(task)

        progress.update(task, description=f"serve: {count} instances through the node")
        first_send = time.time()
        sent = subprocess.run([storescu, "-aet", SERVE_MODALITY_AET, "-aec", SERVE_NODE_AET, "-to", "60",
                               "127.0.0.1", str(node_port), *map(str, inputs)],
                              check=False, capture_output=True, text=True, timeout=600)
        send_s = time.time() - first_send
        if sent.returncode != 0:
            raise RuntimeError(f"storescu failed: {(sent.stdout + sent.stderr).strip()[-800:]}")
        arrived: list[Path] = []
        while len(arrived) < count:
            status = _status(status_port) or {}
            if status.get("failed"):
                raise RuntimeError(f"the node failed {status['failed']} instance(s): {node_log.read_text(errors='replace')[-1500:]}")
            if node.poll() is not None or scp.poll() is not None or time.time() - first_send > SERVE_TIMEOUT_S:
                raise RuntimeError(f"{len(arrived)} of {count} derived instances arrived: {node_log.read_text(errors='replace')[-1500:]}")
            done = status.get("done", 0)
            if done > len(arrived):
                progress.update(task, completed=2 + done)
            arrived = [p for p in received.iterdir() if p.is_file()] if done >= count else arrived
            time.sleep(0.2)
        arrivals = sorted(p.stat().st_mtime - first_send for p in arrived)
        load_after = [round(x, 2) for x in os.getloadavg()]
        sources = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in inputs}
        for path in arrived:  # what arrived is what was asked for: one derived instance per source
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.ImageType[0] != "DERIVED" or (ds.Rows, ds.Columns) != (size, size) \
                    or str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID) not in sources:
                raise RuntimeError(f"{path.name} is not a derived instance of a sent one")
    finally:
        _stop(node)
        _stop(scp)
    end_to_end = arrivals[-1]
    steady = (arrivals[-1] - arrivals[0]) / (count - 1) if count > 1 else None
    backend = serve_backend()
    return {
        "inputs": description,
        "instances": count,
        "size": size,
        "method": "network (the node's default: the shipped model, backend auto, one denoising thread)",
        "backend": backend,
        "path": f"storescu ({SERVE_MODALITY_AET}) -> xraydenoise serve ({SERVE_NODE_AET}, queue on local disk) "
                f"-> storescp ({SERVE_DESTINATION_AET}), loopback TCP",
        "command": "xraydenoise " + " ".join(command).replace(str(workdir), "TMP"),
        "node_startup_s": round(node_startup, 3),
        "send_s": round(send_s, 3),
        "end_to_end_s": round(end_to_end, 3),
        "seconds_per_instance": round(end_to_end / count, 3),
        "instances_per_minute": round(60 * count / end_to_end, 3),
        "steady_seconds_per_instance": None if steady is None else round(steady, 3),
        "arrivals_s": [round(t, 3) for t in arrivals],
        "cpu_count": os.cpu_count(),
        "nice": os.nice(0),  # the benchmark's (and so the node's) scheduling priority: 0 normal, higher yields more
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


def serve_backend() -> str | None:
    """What ``backend="auto"`` runs the shipped network with on this machine: the node's choice,
    which is measured once per machine and remembered (:func:`xraydenoise.denoisers.fastest_backend`)."""
    from xraydenoise.denoisers import fastest_backend
    from xraydenoise.hardware import resolve_device

    try:
        name, fast = fastest_backend(None, device=resolve_device("auto"))
    except Exception:  # noqa: BLE001 - a note in the report, not a reason to lose the measurement
        return None
    if name == "torch":
        return "PyTorch bf16, channels-last" if fast else "PyTorch fp32"
    return "ONNX Runtime" if name == "onnxruntime" else name


def serve_markdown(serve: dict, machine: str, date: str) -> str:
    load, cores = serve["load_average_before"][0], serve["cpu_count"]
    steady = serve["steady_seconds_per_instance"]
    niced = f" The benchmark and its node ran at nice {serve['nice']}, below the other jobs." if serve.get("nice") else ""
    busy = [(f"The machine was busy (load average {load} on {cores} cores, other jobs running): every time is "
             f"longer than on an idle machine, and these numbers are a lower bound on the node's throughput.{niced}"), ""]
    row = (f"| {serve['instances']} | {serve['size']}x{serve['size']} | {significant(serve['instances_per_minute'])} | "
           f"{significant(serve['seconds_per_instance'])} | {'-' if steady is None else significant(steady)} | "
           f"{significant(serve['end_to_end_s'])} | {significant(serve['send_s'])} | {significant(serve['node_startup_s'])} |")
    out = [
        "# DICOM node throughput: `xraydenoise serve`",
        "",
        (f"{date} on {machine}, {cores} cores, CPU only; load average before: {load}, "
         f"after: {serve['load_average_after'][0]} (the node's own work included)."),
        "",
        *(busy if load > 0.5 else []),
        (f"Inputs: {serve['inputs']}. Path: {serve['path']}. Method: {serve['method']}"
         f"{'' if not serve.get('backend') else ', which ran on ' + serve['backend']}. "
         "The clock starts when `storescu` starts sending and stops when the last derived instance is on the "
         "destination's disk; the node has started and loaded its model before (start-up below, not counted)."),
        "",
        "| instances | size | instances/minute | seconds per instance | steady seconds per instance | end to end s | sending s | node start-up s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        row,
        "",
        ("Seconds per instance = end to end / instances; steady = (last arrival - first arrival) / (instances - 1), "
         "which leaves out the first instance's latency (receiving, the first network call)."),
        f"Arrivals after the first send (s): {', '.join(f'{t:.1f}' for t in serve['arrivals_s'])}.",
        "",
        f"Command: `{serve['command']}`.",
    ]
    return "\n".join(out) + "\n"


def print_serve(serve: dict) -> None:
    say(f"serve: {serve['instances']} instances of {serve['size']}x{serve['size']} in {serve['end_to_end_s']:.1f} s: "
        f"{serve['instances_per_minute']:.3g} instances/minute, {serve['seconds_per_instance']:.3g} s per instance "
        f"(load average {serve['load_average_before'][0]} before)")


def write_serve(serve: dict, out: Path, stem: str, machine: str, date: str) -> None:
    write_section(serve, serve_markdown(serve, machine, date), out, stem, machine, date)


def run_serve_section(args: argparse.Namespace) -> int:
    """``--only serve``: the DICOM node section alone; writes serve.json and .md (serve-quick.*
    with --quick) and leaves the other results as they are."""
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_description()
    count = args.serve_instances or (QUICK_SERVE_INSTANCES if args.quick else SERVE_INSTANCES)
    size = QUICK_SERVE_SIZE if args.quick else SERVE_SIZE
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with tempfile.TemporaryDirectory(prefix="xraydenoise-bench-") as tmp, Progress(*columns, console=stderr) as progress:
            serve = measure_serve(Path(tmp), count, size, progress)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        stderr.print(f"error: serve: {exc}", highlight=False, soft_wrap=True)
        return 1
    stem = "serve-quick" if args.quick else "serve"
    write_serve(serve, args.out, stem, machine, date)
    print_serve(serve)
    say(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Speed and memory benchmark of the classical filters and the network.")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for bench.json and bench.md")
    parser.add_argument("--weights", type=Path, default=None, help="network .safetensors (default: the shipped model)")
    parser.add_argument("--quick", action="store_true", help="smoke test: sizes 64 and 128, one run, 512x512 memory test")
    parser.add_argument("--skip-memory", action="store_true", help="skip the peak-memory subprocess")
    parser.add_argument("--only", choices=["batch", "serve"], default=None,
                        help="run one section alone: batch = images/s of --workers 1/2 and --engine ray with 1/2 workers; "
                             "serve = instances/minute through a DICOM node (xraydenoise serve) at 2048x2048")
    parser.add_argument("--batch-images", type=int, default=None,
                        help=f"images per batch run (default {BATCH_IMAGES}, {QUICK_BATCH_IMAGES} with --quick)")
    parser.add_argument("--skip-batch", action="store_true", help="skip the batch-engine section (it is skipped in --quick)")
    parser.add_argument("--serve-instances", type=int, default=None,
                        help=f"instances sent through the DICOM node (default {SERVE_INSTANCES}, {QUICK_SERVE_INSTANCES} with --quick)")
    parser.add_argument("--skip-serve", action="store_true", help="skip the DICOM node section (it is skipped in --quick)")
    args = parser.parse_args(argv)
    if args.batch_images is not None and args.batch_images < 2:
        parser.error("--batch-images must be at least 2")
    if args.serve_instances is not None and args.serve_instances < 1:
        parser.error("--serve-instances must be at least 1")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(QUICK_SIZES, QUICK_MEMORY_SIZE, warmup=1, repeats=1, slow_repeats=1, quick=True)
    return Plan(SIZES, MEMORY_SIZE, warmup=WARMUP, repeats=REPEATS, slow_repeats=SLOW_REPEATS, quick=False)


def resolve_weights(weights: Path | None) -> Path:
    path = weights if weights is not None else shipped_weights()
    if path.suffix != ".safetensors" or not path.is_file():
        stderr.print(f"error: {path}: no .safetensors weights there; pass --weights PATH", highlight=False)
        raise SystemExit(2)
    return path.resolve()


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    if args.only == "batch":
        return run_batch_section(args)
    if args.only == "serve":
        return run_serve_section(args)
    plan = make_plan(args)
    weights = resolve_weights(args.weights)
    threads = default_threads()
    torch.set_num_threads(threads)  # all cores for the network; the classical filters are unaffected
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = machine_info(threads)
    if machine["load_average_at_start"][0] > 0.5:
        stderr.print(f"warning: load average {machine['load_average_at_start'][0]} at start; another process may slow the timings", highlight=False)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with tempfile.TemporaryDirectory(prefix="xraydenoise-bench-") as tmp, Progress(*columns, console=stderr) as progress:
        workdir = Path(tmp)
        export_task = progress.add_task("exporting ONNX", total=1)
        onnx_export_s = export_onnx_quietly(weights, workdir / "unet.onnx")
        progress.advance(export_task)
        nets = network_methods(weights, workdir / "unet.onnx", threads)
        methods = classical_methods() + nets
        results, skipped = run_speed(methods, plan, progress)
        add_bm3d_ratios(results)
        agreement_size = AGREEMENT_SIZE if AGREEMENT_SIZE in plan.sizes else max(plan.sizes)
        agreement = onnx_agreement(nets, agreement_size)
        memory = None
        if not args.skip_memory:
            memory_task = progress.add_task(f"peak memory {plan.memory_size}x{plan.memory_size} (subprocess)", total=1)
            memory = measure_memory(weights, plan.memory_size, workdir)
            progress.advance(memory_task)
        batch = None
        if not (plan.quick or args.skip_batch):  # --quick: only the sections it always had
            batch = measure_batch_engines(workdir, args.batch_images or BATCH_IMAGES, False, progress)
        serve = None
        if not (plan.quick or args.skip_serve):  # written to serve.json/.md only, not into bench.json
            try:
                serve = measure_serve(workdir, args.serve_instances or SERVE_INSTANCES, SERVE_SIZE, progress)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                stderr.print(f"warning: serve section not measured: {exc}", highlight=False, soft_wrap=True)

    checks = evaluate_checks(results, agreement, memory, plan.sizes)
    report = {
        "schema_version": SCHEMA_VERSION,
        "quick": plan.quick,
        "date_utc": date,
        "machine": machine,
        "versions": library_versions(),
        "git": git_state(),
        "input": {"image": repo_path(SAMPLE), "crop": "centre", "noise": "gaussian", "sigma": SIGMA, "sigma_255": round(SIGMA * 255), "seed": SEED},
        "protocol": {"timer": "time.perf_counter", "statistic": "median", "warmup": plan.warmup, "repeats": plan.repeats,
                     "slow_repeats": plan.slow_repeats, "slow_methods": sorted(SLOW_METHODS), "sizes": list(plan.sizes)},
        "network": network_info(weights, onnx_export_s, methods),
        "results": [m.to_json() for m in results],
        "skipped": skipped,
        "onnx_vs_torch": agreement,
        "memory": memory,
        "checks": [{"name": c.name, "target": c.target, "measured": c.measured, "status": c.status} for c in checks],
        "batch_engines": batch,
    }
    stem = "bench-quick" if plan.quick else "bench"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results, methods, checks, report))
    print_report(results, checks, report)
    if batch is not None:
        write_batch(batch, args.out, "batch-engines", machine["description"], date)
        print_batch(batch)
        say(f"wrote {args.out / 'batch-engines.json'} and {args.out / 'batch-engines.md'}")
    if serve is not None:
        write_serve(serve, args.out, "serve", machine["description"], date)
        print_serve(serve)
        say(f"wrote {args.out / 'serve.json'} and {args.out / 'serve.md'}")
    say(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
