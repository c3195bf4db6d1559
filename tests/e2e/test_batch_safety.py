"""Nothing lost, nothing overwritten: worker lifecycle, resumption, tiling, ranges and options.

Each test stands for a defect a hostile review found; the bad-input corpus in
``test_bad_inputs.py`` holds the output-collision cases.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import CHEST, run_cli
from xraydenoise.errors import XRayDenoiseError
from xraydenoise.io import Image, load_image, save_image

SUMMARY = re.compile(r"^(\d+) denoised, (\d+) skipped \(already done\), (\d+) failed$", re.M)


def make_scans(folder: Path, count: int, size: int = 160) -> list[Path]:
    """``count`` different crops of a real chest radiograph."""
    chest = load_image(CHEST).pixels
    paths = []
    for i in range(count):
        top, left = 80 + 37 * i, 150 + 23 * i
        crop = np.ascontiguousarray(chest[top : top + size, left : left + size])
        paths.append(save_image(folder / f"scan{i:02d}.png", Image(crop, "png", 255.0)))
    return paths


def _interruptible() -> None:
    """In the child: Ctrl-C (SIGINT) at its default, as in a terminal. A job that a shell
    started in the background (``cmd &``) inherits SIGINT ignored, and so would the CLI."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args, new_session: bool = False) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="400", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "xraydenoise.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=new_session,
                            preexec_fn=_interruptible)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def wait_for_workers(proc: subprocess.Popen, count: int = 2, timeout: float = 60) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(proc.pid)
        if len(kids) >= count:
            return kids
        time.sleep(0.05)
    raise AssertionError("the worker processes never started")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


def wait_dead(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png")) if folder.exists() else []


# --------------------------------------------------------------------------- workers live and die with the command

SLOW = ["--method", "bm3d", "--sigma", "20", "--workers", "2"]  # 0.3-3 s per 160x160 image, by machine
#: Scans a stopped run starts with: enough that the run is still busy when the first is written.
MANY = 16


def wait_for_first_output(proc: subprocess.Popen, out: Path, timeout: float = 120) -> None:
    """Until the run has written one file (so it is under way, with most of its work left);
    a fixed sleep let a fast machine finish every file before the signal came."""
    deadline = time.monotonic() + timeout
    while not outputs(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None and len(outputs(out)) < MANY, "the run ended before it could be stopped"


@pytest.mark.slow
def test_sigkill_of_the_command_kills_its_workers_and_a_rerun_finishes(tmp_path):
    make_scans(tmp_path / "in", MANY)
    out = tmp_path / "out"
    proc = start_cli("denoise", tmp_path / "in", "-o", out, *SLOW)
    workers = wait_for_workers(proc)
    wait_for_first_output(proc, out)
    proc.kill()
    proc.wait()
    assert wait_dead(workers), "workers outlived the command"
    written = outputs(out)
    time.sleep(2.0)
    assert outputs(out) == written, "files appeared after the command was killed"
    assert len(written) < MANY

    rerun = run_cli("denoise", tmp_path / "in", "-o", out, *SLOW)
    assert rerun.returncode == 0, rerun.stderr
    assert SUMMARY.search(rerun.stderr).groups() == (str(MANY - len(written)), str(len(written)), "0")
    assert len(outputs(out)) == MANY
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_sigterm_and_ctrl_c_stop_at_once_and_write_nothing_more(tmp_path, how):
    make_scans(tmp_path / "in", MANY)
    out = tmp_path / "out"
    # Ctrl-C reaches the whole foreground process group: the workers get it too.
    proc = start_cli("denoise", tmp_path / "in", "-o", out, *SLOW, new_session=how == "ctrl-c")
    workers = wait_for_workers(proc)
    wait_for_first_output(proc, out)
    sent = time.monotonic()
    if how == "sigterm":
        proc.terminate()
    else:
        os.killpg(proc.pid, signal.SIGINT)
    stderr = proc.communicate(timeout=30)[1]
    assert time.monotonic() - sent < 5, "the command took too long to stop"
    assert proc.returncode == (143 if how == "sigterm" else 130), stderr
    assert "Traceback" not in stderr
    assert "rerun the same command to finish" in stderr
    assert wait_dead(workers, timeout=2), "workers outlived the command"
    written = outputs(out)
    time.sleep(2.0)
    assert outputs(out) == written
    for name in written:  # what was written is complete
        assert load_image(out / name).pixels.shape == (160, 160)


@pytest.mark.slow
def test_a_worker_killed_like_by_the_oom_killer_loses_no_file(tmp_path):
    make_scans(tmp_path / "in", 8)
    out = tmp_path / "out"
    proc = start_cli("denoise", tmp_path / "in", "-o", out, *SLOW)
    victim = wait_for_workers(proc)[0]
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    stderr = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert SUMMARY.search(stderr).groups() == ("8", "0", "0")
    assert len(outputs(out)) == 8


_POISON: list[Path] = []  # set by the test below, inherited by the forked workers


def _run_in_worker_or_die(job, method, sigma, options):
    """Module-level (the pool pickles it by name): dies on the poisoned file, as if decoding it
    always ran out of memory."""
    from xraydenoise import batch

    if job.source in _POISON:
        os.kill(os.getpid(), signal.SIGKILL)
    return None, batch.process_one(job, method, sigma, options)


def test_a_file_that_kills_its_worker_every_time_fails_alone(tmp_path, monkeypatch):
    from xraydenoise import batch

    paths = make_scans(tmp_path / "in", 5, size=32)
    poison = paths[2]
    monkeypatch.setattr(sys.modules[__name__], "_POISON", [poison])
    monkeypatch.setattr(batch, "_run_in_worker", _run_in_worker_or_die)
    plan = batch.plan_jobs([str(tmp_path / "in")], tmp_path / "out")
    report = batch.run_batch(plan.jobs, method="gaussian", sigma=0.05, workers=2, progress=False)
    assert [p for p, _ in report.failed] == [poison]
    assert "worker process died" in report.failed[0][1]
    assert sorted(p.name for p in report.done) == sorted(p.name for p in paths if p != poison)


def test_workers_are_capped_by_the_number_of_files(tmp_path, monkeypatch):
    from xraydenoise import batch

    def no_pool(*args, **kwargs):
        raise AssertionError("a process pool was started for one file")

    monkeypatch.setattr(batch, "_run_pool", no_pool)
    plan = batch.plan_jobs([str(p) for p in make_scans(tmp_path / "in", 1, size=32)], tmp_path / "out")
    report = batch.run_batch(plan.jobs, method="gaussian", workers=8, progress=False)
    assert len(report.done) == 1


# --------------------------------------------------------------------------- resumption and shared folders


def test_two_runs_into_one_folder_do_not_break_each_other(tmp_path):
    make_scans(tmp_path / "in", 6, size=128)
    args = ("denoise", tmp_path / "in", "-o", tmp_path / "out", "--method", "nlm", "--sigma", "20", "--overwrite")
    first, second = start_cli(*args), start_cli(*args)
    errors = [first.communicate(timeout=300)[1], second.communicate(timeout=300)[1]]
    assert first.returncode == 0 and second.returncode == 0, errors
    for err in errors:
        assert SUMMARY.search(err).groups() == ("6", "0", "0"), err
    assert len(outputs(tmp_path / "out")) == 6
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".partial")]


def test_rerun_cleans_a_killed_runs_temporary_files_and_redoes_empty_outputs(tmp_path):
    from xraydenoise.io._atomic import partial_prefix

    scans = make_scans(tmp_path / "in", 2, size=32)
    out = tmp_path / "out"
    assert run_cli("denoise", tmp_path / "in", "-o", out, "--method", "gaussian").returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f"{partial_prefix(out / scans[0].name)}{int(dead.stdout)}-x1y2.partial"
    stale.write_bytes(b"half a file from a killed --overwrite run")
    (out / scans[1].name).write_bytes(b"")  # an empty placeholder is not a result

    rerun = run_cli("denoise", tmp_path / "in", "-o", out, "--method", "gaussian")
    assert rerun.returncode == 0, rerun.stderr
    assert SUMMARY.search(rerun.stderr).groups() == ("1", "1", "0")
    assert not stale.exists()
    assert load_image(out / scans[1].name).pixels.shape == (32, 32)


def test_an_output_folder_inside_the_input_is_not_denoised_again(tmp_path):
    make_scans(tmp_path / "in", 2, size=32)
    for _ in range(3):
        result = run_cli("denoise", tmp_path / "in", "-o", tmp_path / "in" / "den", "--method", "gaussian")
        assert result.returncode == 0, result.stderr
    assert not (tmp_path / "in" / "den" / "den").exists()
    assert "left out the output folder" in result.stderr


# --------------------------------------------------------------------------- values and tiling


def test_float_tiff_in_raw_counts_keeps_its_units(tmp_path):
    import tifffile

    clean = load_image(CHEST).to_float()[300:428, 300:428].astype(np.float64) * 3000 + 500
    noisy = (clean + np.random.default_rng(0).normal(0, 60, clean.shape)).astype(np.float32)
    tifffile.imwrite(tmp_path / "counts.tif", noisy, photometric="minisblack")
    result = run_cli("denoise", tmp_path / "counts.tif", "-o", tmp_path / "out", "--method", "nlm")
    assert result.returncode == 0, result.stderr
    out = load_image(tmp_path / "out" / "counts.tif").pixels
    assert out.dtype == np.float32
    assert abs(out.mean() - clean.mean()) < 0.01 * clean.mean()  # not a flat white image
    assert np.abs(out - clean).mean() < 0.6 * np.abs(noisy - clean).mean()


def test_api_denoises_a_float_array_of_raw_counts_in_its_own_units():
    import xraydenoise

    clean = load_image(CHEST).to_float()[300:428, 300:428].astype(np.float64) * 3000 + 500
    noisy = clean + np.random.default_rng(1).normal(0, 60, clean.shape)
    for method in ("nlm", "network"):
        out = xraydenoise.denoise(noisy, method=method)
        assert out.shape == noisy.shape and np.isfinite(out).all()
        assert abs(out.mean() - clean.mean()) < 0.01 * clean.mean(), method  # not a flat white [0, 1] image
        assert np.abs(out - clean).mean() < 0.6 * np.abs(noisy - clean).mean(), method


def test_network_output_does_not_depend_on_the_tile_size(chest_image):
    from xraydenoise.denoisers import NetworkDenoiser

    image = np.ascontiguousarray(chest_image[:520, :700])
    whole = NetworkDenoiser(tile=1024)(image)
    for tile in (520, 601):  # odd and even sizes; cores and windows stay on the unshuffle grid
        tiled = NetworkDenoiser(tile=tile)(image)
        assert np.abs(tiled - whole).max() < 1e-4, tile  # far below one 16-bit level (1.5e-5 x 7)


def test_a_network_returning_the_wrong_shape_is_an_error_not_a_file():
    from xraydenoise.denoisers import run_denoiser

    with pytest.raises(XRayDenoiseError, match="returned shape"):
        run_denoiser(lambda image, sigma: image[:-1], np.zeros((32, 32), np.float32), None)


@pytest.mark.parametrize("method", ["network-x8", "nlm", "bm3d", "tv", "wavelet"])
def test_tiny_images_go_through_every_method(method):
    """Without a warning either: a user sees nothing but the result."""
    import warnings

    import xraydenoise

    for shape in [(1, 1), (1, 9), (9, 1), (7, 7)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = xraydenoise.denoise(np.full(shape, 0.5, np.float32), 10 / 255, method=method)
        assert out.shape == shape and np.isfinite(out).all(), shape


@pytest.mark.parametrize("bad", [
    {"image": np.full((16, 16), np.nan, np.float32)},
    {"image": np.zeros((16, 16), np.float32), "sigma": "25"},
    {"image": np.zeros((16, 16), np.float32), "sigma": float("inf")},
    {"image": np.zeros((16, 16, 3), np.float32)},
    {"image": np.zeros((16, 16), np.int64)},
    {"image": np.zeros((16, 16), np.uint16), "max_value": 0},
    {"image": np.full((16, 16), 5000, np.uint16), "max_value": 4095},
    {"image": np.zeros((16, 16), np.float32), "method": "median", "tile": 512},
])
def test_api_errors_are_xraydenoise_errors(bad):
    import xraydenoise

    bad = dict(bad)
    image = bad.pop("image")
    with pytest.raises(XRayDenoiseError):
        xraydenoise.denoise(image, **{"method": "median", **bad})


def test_api_scales_twelve_bit_data_by_its_real_range():
    import xraydenoise

    crop = load_image(CHEST).to_float()[200:264, 200:264]
    twelve = np.rint(crop * 4095).astype(np.uint16)
    out = xraydenoise.denoise(twelve, 0.02, method="gaussian", max_value=4095)
    assert out.dtype == np.uint16 and out.max() <= 4095
    assert np.abs(out.astype(float) - twelve).mean() < 0.02 * 4095


# --------------------------------------------------------------------------- options, names, settings


@pytest.mark.parametrize("args, reason", [
    (["--sigma", "nan"], "--sigma must be"),
    (["--sigma", "inf"], "--sigma must be"),
    (["--sigma", "1e9"], "--sigma must be"),
    (["--method", "network", "--tile", "100"], "--tile must be at least"),
    (["--method", "network", "--tile", "0"], "--tile must be at least"),
    (["--method", "nlm", "--backend", "onnxruntime"], "apply to networks"),
    (["--method", "gaussian", "--tile", "512"], "apply to networks"),
])
def test_bad_denoise_options_are_one_line_before_anything_runs(tmp_path, args, reason):
    scan = make_scans(tmp_path / "in", 1, size=32)[0]
    result = run_cli("denoise", scan, "-o", tmp_path / "out", *(["--method", "gaussian"] if "--method" not in args else []), *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        next(line for line in result.stderr.splitlines() if reason in line)]
    assert not (tmp_path / "out").exists()


def test_other_commands_refuse_bad_values_in_one_line(tmp_path, tiny_weights):
    folder = tmp_path / "existing"
    folder.mkdir()
    cache_file = tmp_path / "cache-is-a-file"
    cache_file.write_text("")
    scan = make_scans(tmp_path / "in", 1, size=32)[0]
    cases = [
        (["evaluate", "--size", "-5"], {}, "--size and --limit must be"),
        (["export", "-o", folder], {}, "is a folder"),
        # Weights without an ONNX file beside them are exported into the cache folder.
        (["denoise", scan, "-o", tmp_path / "out", "--method", tiny_weights, "--backend", "onnxruntime"],
         {"XRAYDENOISE_CACHE": str(cache_file)}, "is a file"),
    ]
    for args, env, reason in cases:
        result = run_cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and reason in errors[0], (args, result.stderr)


def test_names_are_printed_as_typed_and_help_shows_the_noise_syntax(tmp_path):
    bad = tmp_path / "scan:ok:[b].png"
    bad.write_bytes(b"not a png")
    result = run_cli("denoise", bad, "-o", tmp_path / "out", "--method", "gaussian")
    assert result.returncode == 2
    assert f"error: {bad}: " in result.stderr  # no emoji, no markup eaten
    assert "pg:A:S" in run_cli("evaluate", "--help").stdout


def test_weights_in_a_non_ascii_folder_write_tiff_outputs(tmp_path, tiny_weights):
    import shutil

    import tifffile

    folder = tmp_path / "modèles-für-Röntgen"
    folder.mkdir()
    weights = Path(shutil.copy(tiny_weights, folder / "réseau.safetensors"))
    shutil.copy(tiny_weights.with_suffix(".json"), weights.with_suffix(".json"))
    scan = tmp_path / "scan.tif"
    tifffile.imwrite(scan, load_image(CHEST).pixels[:64, :64].astype(np.uint16) * 257, photometric="minisblack")
    result = run_cli("denoise", scan, "-o", tmp_path / "out", "--method", weights)
    assert result.returncode == 0, result.stderr
    with tifffile.TiffFile(tmp_path / "out" / "scan.tif") as tif:
        description = tif.pages[0].description
    assert str(folder) not in description  # no private folder names in the output
    assert "r\\xe9seau.safetensors" in description


@pytest.mark.slow
def test_a_damaged_cached_onnx_export_is_rebuilt(tmp_path, tiny_weights):
    cache = tmp_path / "cache"
    scan = make_scans(tmp_path / "in", 1, size=64)[0]
    args = ("denoise", scan, "-o", tmp_path / "out", "--method", tiny_weights, "--backend", "onnxruntime", "--overwrite")
    first = run_cli(*args, env={"XRAYDENOISE_CACHE": str(cache)})
    assert first.returncode == 0, first.stderr
    (exported,) = list((cache / "onnx").glob("*.onnx"))
    exported.write_bytes(exported.read_bytes()[:1000])
    second = run_cli(*args, env={"XRAYDENOISE_CACHE": str(cache)})
    assert second.returncode == 0, second.stderr
    assert exported.stat().st_size > 1000
