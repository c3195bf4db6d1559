"""``denoise --engine ray``: the local engine's files byte for byte, on a local Ray cluster of
two worker processes (actors), through kills of the driver and of a worker, and resumed.

Every run goes through the command line in a subprocess, as in test_batch_safety.py: the
local engine's run of the same inputs is the reference for every output file, every error
and note line and the summary. Ray is in the ``dev`` extra: without it these tests fail
with a message saying so, they never skip.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.conftest import CHEST, ROOT, run_cli
from tests.dicom_corpus import PYDICOM_FILES
from xraydenoise.io import Image, load_image, save_image

SUMMARY = re.compile(r"^(\d+) denoised, (\d+) skipped \(already done\), (\d+) failed$", re.MULTILINE)
RAY = ("--engine", "ray", "--workers", "2")
FAST = ("--method", "gaussian", "--sigma", "5")  # these tests are about files, not quality
SLOWER = ("--method", "nlm", "--sigma", "20")  # ~0.2 s per 384x384 scan: a kill lands part way
COUNT = 12


@pytest.fixture(scope="module", autouse=True)
def ray_installed():
    try:
        importlib.import_module("ray.data")
    except ImportError:
        pytest.fail("ray is not installed: it is in the dev extra (pip install -e '.[dev]', or make setup)", pytrace=False)


# --------------------------------------------------------------------------- inputs and processes


def make_corpus(folder: Path) -> Path:
    """8-bit PNGs, a 16-bit TIFF and DICOM (uncompressed, RLE and lossy JPEG, which is written
    in another syntax with a note) in subfolders, and one file that is not an image."""
    chest = load_image(CHEST).pixels
    for i in range(3):
        crop = np.ascontiguousarray(chest[100 + 60 * i : 196 + 60 * i, 300 : 396])
        save_image(folder / "png8" / f"scan{i}.png", Image(crop, "png", 255.0))
    wide = chest[400:528, 400:528].astype(np.uint16) * 257 + np.arange(128, dtype=np.uint16)
    (folder / "tiff16").mkdir(parents=True)
    tifffile.imwrite(folder / "tiff16" / "wide.tif", wide, photometric="minisblack")
    (folder / "dicom").mkdir()
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPGExtended.dcm"):
        shutil.copy(PYDICOM_FILES / name, folder / "dicom" / name)
    (folder / "broken.png").write_bytes(b"not a png at all")
    return folder


def make_scans(folder: Path, count: int = COUNT, size: int = 384) -> Path:
    chest = load_image(CHEST).pixels
    for i in range(count):
        crop = np.ascontiguousarray(chest[40 * i : 40 * i + size, 30 * i : 30 * i + size])
        save_image(folder / f"scan{i:02d}.png", Image(crop, "png", 255.0))
    return folder


def files(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by relative path (temporary files included: none may be left)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def start_cli(*args) -> subprocess.Popen:
    env = dict(os.environ, COLUMNS="400", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "xraydenoise.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def descendants(pid: int) -> list[int]:
    found = []
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split():
        found += [int(child), *descendants(int(child))]
    return found


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_dead(pids, timeout: float = 15) -> list[int]:
    """The pids still alive after ``timeout`` seconds (empty when all died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def kill_leftovers(seen: dict[int, str]) -> None:
    """Processes of the runs this test started that Ray leaves to end by themselves (its
    per-node agents notice a dead raylet within a minute): ended now, by their ids, where
    the id still names the same process."""
    for pid, name in seen.items():
        if alive(pid) and title(pid) == name:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def look(pid: int, seen: dict[int, str]) -> None:
    """Add ``pid``'s descendants to ``seen``, with their titles (read while they live)."""
    for child in descendants(pid):
        name = title(child)
        if name:
            seen[child] = name


def watch(proc: subprocess.Popen, until, seen: dict[int, str], timeout: float = 180) -> None:
    """Poll until ``until()`` or the end of ``proc``, adding its descendants to ``seen``."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not until():
        look(proc.pid, seen)
        time.sleep(0.05)


def ray_processes(seen: dict[int, str]) -> list[int]:
    """The processes of a local cluster that can write or schedule: actors, raylet, GCS."""
    return [p for p, name in seen.items() if any(key in name for key in ("DenoiseActor", "raylet", "gcs_server"))]


def messages(stderr: str) -> list[str]:
    """The error and note lines (in sorted order: the engines finish files in different orders)."""
    return sorted(line for line in stderr.splitlines() if line.startswith(("error: ", "note: ")))


def only_our_lines(result) -> None:
    """Ray's own logs stay off the terminal: stderr holds our lines, stdout the progress bar."""
    for line in result.stderr.splitlines():
        assert line.startswith(("error: ", "note: ")) or SUMMARY.match(line), line
    for line in result.stdout.splitlines():
        assert not line.strip() or line.lstrip().startswith(("denoising", "starting Ray")), line


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """``COUNT`` scans and the local engine's outputs of them with SLOWER."""
    folder = make_scans(tmp_path_factory.mktemp("scans") / "in")
    out = folder.parent / "local"
    local = run_cli("denoise", folder, "-o", out, *SLOWER)
    assert local.returncode == 0, local.stderr
    return folder, files(out)


# --------------------------------------------------------------------------- same outputs


def test_ray_writes_the_local_engines_files_byte_for_byte_and_stops_its_cluster(tmp_path):
    corpus = make_corpus(tmp_path / "in")
    local = run_cli("denoise", corpus, "-o", tmp_path / "local", *FAST)
    assert local.returncode == 2, local.stderr  # the broken file

    proc = start_cli("denoise", corpus, "-o", tmp_path / "ray", *FAST, *RAY)
    seen: dict[int, str] = {}
    watch(proc, lambda: False, seen)
    stdout, stderr = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    assert result.returncode == 2, stderr
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    assert len(files(tmp_path / "ray")) == 7
    assert messages(stderr) == messages(local.stderr)
    assert any(line.startswith("note: JPEG Extended") for line in messages(stderr))
    assert SUMMARY.search(stderr).groups() == SUMMARY.search(local.stderr).groups() == ("7", "0", "1")
    only_our_lines(result)
    assert "8/8" in stdout and "images/s" in stdout  # done/total (the broken file too) and throughput
    assert ray_processes(seen), "no local Ray cluster was seen"
    assert not wait_dead(ray_processes(seen)), "the local cluster outlived the run"
    kill_leftovers(seen)

    # A rerun has nothing left to do: no cluster is started, nothing is rewritten.
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    rerun = run_cli("denoise", corpus, "-o", tmp_path / "ray", *FAST, *RAY)
    assert rerun.returncode == 2
    assert SUMMARY.search(rerun.stderr).groups() == ("0", "7", "1")
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.slow
def test_ray_with_the_default_network_writes_the_local_engines_bytes(tmp_path):
    chest = load_image(CHEST).pixels
    save_image(tmp_path / "in" / "chest.png", Image(np.ascontiguousarray(chest[200:456, 200:456]), "png", 255.0))
    tifffile.imwrite(tmp_path / "in" / "chest16.tif", chest[500:756, 300:556].astype(np.uint16) * 257, photometric="minisblack")
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", tmp_path / "in" / "ct.dcm")
    local = run_cli("denoise", tmp_path / "in", "-o", tmp_path / "local")
    ray = run_cli("denoise", tmp_path / "in", "-o", tmp_path / "ray", *RAY)
    assert local.returncode == 0, local.stderr
    assert ray.returncode == 0, ray.stderr
    assert SUMMARY.search(ray.stderr).groups() == ("3", "0", "0")
    assert files(tmp_path / "ray") == files(tmp_path / "local")
    only_our_lines(ray)


def test_collisions_are_refused_as_by_the_local_engine_before_ray_starts(tmp_path):
    chest = load_image(CHEST).pixels[:32, :32]
    for folder in ("a", "b"):
        save_image(tmp_path / folder / "scan.png", Image(chest, "png", 255.0))
    cases = [
        [tmp_path / "a" / "scan.png", tmp_path / "b" / "scan.png", "-o", tmp_path / "out"],  # one output for two inputs
        [tmp_path / "a", "-o", tmp_path / "a"],  # outputs over the inputs
    ]
    for args in cases:
        local = run_cli("denoise", *args, *FAST)
        ray = run_cli("denoise", *args, *FAST, *RAY)
        assert local.returncode == ray.returncode == 2
        assert ray.stderr == local.stderr
        assert "nothing was written" in ray.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["scan.png"]


# --------------------------------------------------------------------------- kills and resume


@pytest.mark.slow
def test_sigkill_of_the_driver_stops_the_cluster_and_a_rerun_finishes_the_rest(tmp_path, scans):
    folder, reference = scans
    out = tmp_path / "out"
    proc = start_cli("denoise", folder, "-o", out, *SLOWER, *RAY)
    seen: dict[int, str] = {}
    watch(proc, lambda: len(list(out.glob("*.png"))) >= 2, seen)
    look(proc.pid, seen)
    proc.kill()
    proc.communicate()
    assert not wait_dead(ray_processes(seen), timeout=10), "Ray's processes outlived the killed command"
    written = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.png")}
    time.sleep(2.0)
    assert set(out.glob("*.png")) == set(written), "files appeared after the command was killed"
    assert 2 <= len(written) < COUNT, "the kill should land part way through the batch"
    kill_leftovers(seen)

    rerun = run_cli("denoise", folder, "-o", out, *SLOWER, *RAY)
    assert rerun.returncode == 0, rerun.stderr
    assert SUMMARY.search(rerun.stderr).groups() == (str(COUNT - len(written)), str(len(written)), "0")
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in written} == written, "finished files were redone"
    assert files(out) == reference  # byte for byte, and no temporary file left


@pytest.mark.slow
def test_a_killed_worker_loses_no_file(tmp_path, scans):
    folder, reference = scans
    out = tmp_path / "out"
    proc = start_cli("denoise", folder, "-o", out, *SLOWER, *RAY)
    seen: dict[int, str] = {}
    watch(proc, lambda: any(out.glob("*.png")), seen)
    actors = [p for p in descendants(proc.pid) if "DenoiseActor" in title(p)]
    assert actors, "no Ray worker found"
    os.kill(actors[0], signal.SIGKILL)
    watch(proc, lambda: False, seen)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert SUMMARY.search(stderr).groups() == (str(COUNT), "0", "0")
    only_our_lines(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    assert files(out) == reference
    kill_leftovers(seen)


POISON_SCRIPT = """
import os, signal, sys
from pathlib import Path
from xraydenoise import ray_engine
from xraydenoise.batch import plan_jobs

class Poisoned(ray_engine.DenoiseActor):  # defined in __main__: Ray ships it to the workers by value
    def __call__(self, rows):
        if any(str(s).endswith("scan02.png") for s in rows["source"]):
            os.kill(os.getpid(), signal.SIGKILL)  # as if decoding it always ran out of memory
        return super().__call__(rows)

ray_engine.DenoiseActor = Poisoned
plan = plan_jobs([sys.argv[1]], Path(sys.argv[2]))
report = ray_engine.run_ray(plan.jobs, method="gaussian", workers=2, progress=False)
print("FAILED", *[f"{Path(p).name}|{m}" for p, m in report.failed], sep="\\n")
print("DONE", *sorted(Path(p).name for p in report.done), sep="\\n")
"""


@pytest.mark.slow
def test_a_file_that_kills_its_worker_every_time_fails_alone(tmp_path):
    folder = make_scans(tmp_path / "in", count=4, size=32)
    script = tmp_path / "poison.py"
    script.write_text(textwrap.dedent(POISON_SCRIPT))
    done = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=240, cwd=ROOT, check=False, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    failed = done.stdout.split("FAILED\n")[1].split("DONE")[0].strip().splitlines()
    # the local engine's message for the same case (test_batch_safety.py)
    assert failed == [f"scan02.png|{folder / 'scan02.png'}: the worker process died while denoising it, twice (killed, or out of memory)"], done.stdout
    assert done.stdout.split("DONE\n")[1].split() == ["scan00.png", "scan01.png", "scan03.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scan00.png", "scan01.png", "scan03.png"]


# --------------------------------------------------------------------------- a running cluster


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_address_runs_on_a_running_cluster_and_leaves_it_running(tmp_path):
    corpus = make_corpus(tmp_path / "in")
    local = run_cli("denoise", corpus, "-o", tmp_path / "local", *FAST)
    port = free_port()
    # A cluster as Ray sets one up: token authentication, the token given to every process.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1", **auth))
    try:
        deadline = time.monotonic() + 90
        while not (port_open(port) and any("raylet" in title(p) for p in descendants(head.pid))):
            assert time.monotonic() < deadline and head.poll() is None, "ray start --head did not come up"
            time.sleep(0.2)
        ray = run_cli("denoise", corpus, "-o", tmp_path / "ray", *FAST, *RAY, "--address", f"127.0.0.1:{port}", env=auth)
        assert ray.returncode == 2, ray.stderr
        assert files(tmp_path / "ray") == files(tmp_path / "local")
        assert messages(ray.stderr) == messages(local.stderr)
        only_our_lines(ray)
        assert head.poll() is None, "the run stopped a cluster it did not start"
    finally:
        cluster: dict[int, str] = {}
        look(head.pid, cluster)
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        kill_leftovers(cluster)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("args, reason", [
    (["--address", "127.0.0.1:6379"], "error: --address and --gpus-per-worker apply to --engine ray"),
    (["--gpus-per-worker", "1"], "error: --address and --gpus-per-worker apply to --engine ray"),
    (["--engine", "spark"], "error: --engine must be local or ray, got 'spark'"),
    (["--engine", "ray", "--method", "network", "--gpus-per-worker", "0"], "error: --gpus-per-worker must be a positive number of GPUs"),
    (["--engine", "ray", "--method", "network", "--gpus-per-worker", "nan"], "error: --gpus-per-worker must be a positive number of GPUs"),
    (["--engine", "ray", "--gpus-per-worker", "1"], "error: --gpus-per-worker applies to networks; the gaussian filter does not use a GPU"),
    (["--engine", "ray", "--method", "network", "--device", "tpu"], "error: device must be auto, cpu, cuda or cuda:N"),
])
def test_bad_engine_options_are_one_line_before_anything_runs(tmp_path, args, reason):
    save_image(tmp_path / "scan.png", Image(load_image(CHEST).pixels[:32, :32], "png", 255.0))
    method = [] if "--method" in args else ["--method", "gaussian"]
    result = run_cli("denoise", tmp_path / "scan.png", "-o", tmp_path / "out", *method, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(reason), result.stderr
    assert not (tmp_path / "out").exists()


def test_without_ray_installed_one_line_names_the_extra(tmp_path):
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    save_image(tmp_path / "scan.png", Image(load_image(CHEST).pixels[:32, :32], "png", 255.0))
    result = run_cli("denoise", tmp_path / "scan.png", "-o", tmp_path / "out", *FAST, "--engine", "ray",
                     env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 2
    assert result.stderr.strip() == "error: ray is not installed: pip install 'xraydenoise[ray]'"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_gpus_per_worker_on_a_cluster_without_gpus_is_one_line(tmp_path):
    save_image(tmp_path / "scan.png", Image(load_image(CHEST).pixels[:64, :64], "png", 255.0))
    result = run_cli("denoise", tmp_path / "scan.png", "-o", tmp_path / "out", "--engine", "ray", "--gpus-per-worker", "1",
                     env={"CUDA_VISIBLE_DEVICES": ""})  # a cluster without GPUs, also on a machine with some
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --gpus-per-worker 1: the Ray cluster has 0 GPU(s)"
    assert not list((tmp_path / "out").iterdir())
