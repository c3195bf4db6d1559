"""Denoise many files: plan every output first, then run the jobs in workers that die with the run.

Planning (:func:`plan_jobs`) expands files, folders and globs into (input, output) pairs and
refuses the whole run before a single file is touched when an output would land on any input,
or two inputs would share an output. Running (:func:`run_batch`) writes each output atomically
(temporary name, then rename), so a run killed part way leaves only complete outputs and a
rerun skips what exists and finishes the rest. Every job ends either written or in the report's
failures with its reason.

Worker processes are killed with the command: on SIGKILL of the parent through the kernel's
parent-death signal, on Ctrl-C or SIGTERM by the parent itself. A worker that dies (the OOM
killer) fails only the file it was working on, after one retry.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, XRayDenoiseError
from .io import SUPPORTED_SUFFIXES, dicomdir_referenced_files, is_dicomdir, is_supported_path, load_image, save_image
from .io._atomic import PARTIAL_SUFFIX, remove_stale_partials
from .io.dicom import output_transfer_syntax

if TYPE_CHECKING:  # pragma: no cover
    from .noise import NoiseModel

#: Magic numbers of the formats we write: an output without one is not a finished result.
_OUTPUT_MAGICS = (b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass
class Plan:
    """What a run will do, decided before it starts.

    ``problems`` are inputs that cannot be processed (missing, empty folder), each counted as
    a failure; ``notes`` say what was left out on purpose (hidden files, non-images).
    """

    jobs: list[Job] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    #: Distinct notes of the run (e.g. a transfer syntax written uncompressed), in order.
    notes: list[str] = field(default_factory=list)


class OutputCollisionError(XRayDenoiseError):
    """The planned outputs overlap the inputs or each other; nothing was written."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[0])
        self.lines = lines


# --------------------------------------------------------------------------- planning


def output_path(path: Path, suffix: str | None) -> Path:
    """``path`` with the output format's suffix; names without an image suffix (``IM0001``,
    UID names such as ``1.2.840.113619.2.55.3``) keep their whole name and get it appended."""
    if not suffix:
        return path
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        return path.with_suffix(suffix)
    return path.with_name(path.name + suffix)


def _expand(item: str) -> list[Path] | None:
    """Paths an input names: itself if it exists (``scan[1].png`` is a name, not a pattern),
    else the matches of a glob pattern; None when nothing matches."""
    path = Path(item)
    if path.exists() or path.is_symlink():
        return [path]
    if glob.has_magic(item):
        matches = [Path(p) for p in sorted(glob.glob(item, recursive=True))]
        return matches or None
    return None


def _identity(path: Path) -> tuple:
    """What makes two paths the same file: device and inode when it exists, else its resolved name."""
    try:
        st = path.stat()
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.normcase(str(path.resolve())))


def _walk(folder: Path, exclude: Path, counts: dict[str, int]) -> list[Path]:
    """Image files below ``folder`` (sorted, recursive), leaving out ``exclude`` (the output
    folder, when it lies inside the input) and counting what else is left out."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        root_path = Path(root)
        kept = []
        for name in sorted(dirs):
            sub = root_path / name
            if name.startswith("."):
                counts["hidden"] += 1
            elif _same_path(sub, exclude):
                counts["output"] += 1
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            path = root_path / name
            if name.startswith("."):
                if not name.endswith(PARTIAL_SUFFIX):
                    counts["hidden"] += 1
            elif is_supported_path(path):
                found.append(path)
            else:
                counts["other"] += 1
    return found


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


@dataclass
class Inputs:
    """The image files that command-line inputs name, as every command reads them.

    ``files`` pairs each file with its name relative to what was given (a folder's files keep
    their path below it; a DICOMDIR's images their path below its folder; a single file its
    name); ``problems`` and ``notes`` are as in :class:`Plan`.
    """

    files: list[tuple[Path, Path]] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def expand_inputs(inputs: list[str], *, exclude: Path | None = None) -> Inputs:
    """Expand files, folders (recursively), DICOMDIRs and globs into image files.

    Hidden files and folders, and ``exclude`` (an output folder inside an input folder), are
    left out with a note.
    """
    found = Inputs()
    counts = {"hidden": 0, "other": 0, "output": 0}
    exclude = Path(exclude) if exclude is not None else Path("/nonexistent-output-folder")
    for item in inputs:
        matches = _expand(item)
        if matches is None:
            reason = "no file matches this pattern" if glob.has_magic(item) else "no such file or folder"
            found.problems.append((Path(item), reason))
            continue
        for path in matches:
            if path.is_dir():
                files = _walk(path, exclude, counts)
                if not files:
                    found.problems.append((path, f"folder contains no supported image ({', '.join(s[1:] for s in SUPPORTED_SUFFIXES)} or DICOM)"))
                found.files.extend((file, file.relative_to(path)) for file in files)
            elif is_dicomdir(path):  # a DICOM medium's index: its images, mirrored from its folder
                try:
                    referenced = dicomdir_referenced_files(path)
                except XRayDenoiseError as exc:
                    found.problems.append((path, str(exc).removeprefix(f"{path}: ")))
                    continue
                found.files.extend((file, file.relative_to(path.parent)) for file in referenced)
            else:
                found.files.append((path, Path(path.name)))
    if counts["hidden"]:
        found.notes.append(f"left out {counts['hidden']} hidden file(s) or folder(s) (names starting with '.')")
    if counts["other"]:
        found.notes.append(f"left out {counts['other']} file(s) that are not images")
    if counts["output"]:
        found.notes.append(f"left out the output folder {exclude}, which lies inside an input folder")
    return found


def plan_jobs(inputs: list[str], out_dir: Path, *, suffix: str | None = None) -> Plan:
    """Expand files, folders (recursively) and globs into jobs, and check the outputs.

    A folder's files keep their path relative to that folder under ``out_dir``; single files
    go straight into ``out_dir``. ``suffix`` changes the output format (default: the input's).
    Hidden files and folders, and ``out_dir`` itself when it lies inside an input folder, are
    left out, with a note.

    Raises
    ------
    OutputCollisionError
        An output would be written over any input of the run, or two inputs would share an
        output; ``lines`` names each case. Nothing is touched.
    """
    out_dir = Path(out_dir)
    found = expand_inputs(inputs, exclude=out_dir)
    plan = Plan(jobs=[Job(file, output_path(out_dir / relative, suffix)) for file, relative in found.files],
                problems=found.problems, notes=found.notes)
    _check_outputs(plan.jobs)
    return plan


def _check_outputs(jobs: list[Job]) -> None:
    inputs = {_identity(job.source): job.source for job in jobs}
    owners: dict[tuple, Job] = {}
    lines: list[str] = []
    for job in jobs:
        key = _identity(job.target)
        if key in inputs:
            victim = inputs[key]
            if victim == job.source:
                lines.append(f"{job.source}: output path {job.target} equals the input; refusing to overwrite the input")
            else:
                lines.append(f"{job.source}: its output {job.target} would overwrite the input {victim}")
        elif key in owners:
            other = owners[key].source
            hint = ("keep each file's own format (no --format), or denoise them into separate folders"
                    if _same_path(other.parent, job.source.parent) else
                    "pass their common folder to mirror the tree, or denoise them into separate folders")
            lines.append(f"{job.source}: its output {job.target} is also the output of {other}; {hint}")
        else:
            owners[key] = job
    if lines:
        raise OutputCollisionError(lines)


def is_finished_output(path: Path) -> bool:
    """Whether ``path`` holds a written result: a non-empty file that starts like an image.

    Outputs are renamed into place only when complete, so this only catches files made by
    something else (an empty placeholder, a copy cut short at the start).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError:
        return False
    return head.startswith(_OUTPUT_MAGICS) or head[_DICOM_MAGIC_OFFSET:] == b"DICM"


# --------------------------------------------------------------------------- one job


# One denoiser per worker process, built once.
_WORKER_DENOISER = None
_WORKER_INIT_ERROR: XRayDenoiseError | None = None


def _init_worker(method: str, options: dict) -> None:
    global _WORKER_DENOISER
    from .denoisers import get_denoiser

    _WORKER_DENOISER = (method, get_denoiser(method, **options))


def _die_with_parent(parent_pid: int) -> None:
    # Linux's parent-death signal: the kernel kills this worker when the process that started
    # it dies, even by SIGKILL, so no worker outlives the command and goes on writing files.
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)


def _init_pool_worker(method: str, options: dict, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the parent decides and kills the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # An initializer that raises breaks the pool (BrokenProcessPool) and logs a traceback per
    # worker; a denoiser that cannot be built (bad weights) is kept and re-raised once, in the
    # parent, by _raise_init_error.
    global _WORKER_INIT_ERROR
    try:
        _init_worker(method, options)
    except XRayDenoiseError as exc:
        _WORKER_INIT_ERROR = exc


def _raise_init_error() -> None:
    if _WORKER_INIT_ERROR is not None:
        raise _WORKER_INIT_ERROR


def _method_label(method: str) -> str:
    """How an output names the method: a network with the first 12 hex digits of its weights'
    (and model card's) SHA-256 (DICOM's derived UIDs are made from this label, so two different weights files of
    one name, or two versions of the shipped model, never give the same UIDs), a weights file by
    its file name (never the full path, which may hold private folder names), in ASCII so
    every format's text fields take it."""
    from .denoisers import NETWORK_ALIASES
    from .export import weights_digest
    from .weights import shipped_weights

    if method in NETWORK_ALIASES:
        label = f"{method}@{weights_digest(NETWORK_ALIASES[method] or shipped_weights())[:12]}"
    elif Path(method).suffix.lower() in (".safetensors", ".onnx"):
        label = f"{Path(method).name}@{weights_digest(method)[:12]}"
    else:
        label = method
    return label.encode("ascii", "backslashreplace").decode("ascii")


def process_one(job: Job, method: str, sigma: float | NoiseModel | None, options: dict) -> str | None:
    """Denoise one file into its planned output; raises XRayDenoiseError on bad input.

    Returns the note of a DICOM output written in another transfer syntax than its input's
    (the batch prints each distinct note once per run), else None.
    """
    from .denoisers import denoise_image, get_denoiser

    image = load_image(job.source, all_frames=True)  # multi-frame DICOM: denoised frame by frame
    denoiser = _WORKER_DENOISER[1] if _WORKER_DENOISER and _WORKER_DENOISER[0] == method else get_denoiser(method, **options)
    save_image(job.target, denoise_image(image, denoiser, sigma), method=_method_label(method))
    return output_transfer_syntax(image.dicom)[1] if image.format == "dicom" else None


def _run_in_worker(job: Job, method: str, sigma: float | NoiseModel | None, options: dict) -> tuple[str | None, str | None]:
    """(None, note) when written, else (the reason it failed, None)."""
    try:
        return None, process_one(job, method, sigma, options)
    except XRayDenoiseError as exc:
        return str(exc), None
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop a batch of thousands
        return f"{job.source}: unexpected error: {type(exc).__name__}: {exc}", None


# --------------------------------------------------------------------------- the run


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the workers are killed on the way out."""


@contextlib.contextmanager
def _sigterm_raises():
    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    # shutdown() waits for running jobs; on an interruption they are killed instead, so
    # nothing is written after the command has ended (a killed write leaves only a hidden
    # temporary file, removed by the next run).
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def jobs_to_do(jobs: list[Job], *, overwrite: bool, on_failure=None) -> tuple[BatchReport, list[Job]]:
    """What is left to do of planned jobs, the rule of every engine: finished outputs are
    skipped unless ``overwrite``, stale temporaries of dead writers removed, and a folder in an
    output's place fails its job. Returns the report so far and the jobs to run."""
    report = BatchReport()
    todo: list[Job] = []
    for job in jobs:
        remove_stale_partials(job.target)
        if job.target.is_dir():  # not a finished output to skip, and not ours to replace
            report.failed.append((job.source, f"{job.target}: is a directory; cannot write the output there"))
        elif not overwrite and is_finished_output(job.target):
            report.skipped.append(job.target)
        else:
            todo.append(job)
    if on_failure:
        for _, message in report.failed:
            on_failure(message)
    return report, todo


def run_batch(
    jobs: list[Job],
    *,
    method: str,
    sigma: float | NoiseModel | None = None,
    options: dict | None = None,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
    on_failure=None,
    on_note=None,
) -> BatchReport:
    """Run planned jobs; outputs that exist are skipped unless ``overwrite``.

    ``workers`` is capped by the number of jobs to do. ``on_failure(message)`` is called for
    each failure as it happens, ``on_note(message)`` once for each distinct note.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .denoisers import check_noise

    options = options or {}
    sigma = check_noise(sigma)
    report, todo = jobs_to_do(jobs, overwrite=overwrite, on_failure=on_failure)

    def record(job: Job, outcome: tuple[str | None, str | None]) -> None:
        failure, note = outcome
        if note and note not in report.notes:
            report.notes.append(note)
            if on_note:
                on_note(note)
        if failure is None:
            report.done.append(job.target)
        else:
            report.failed.append((job.source, failure))
            if on_failure:
                on_failure(failure)

    columns = [TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    workers = max(1, min(workers, len(todo)))
    with Progress(*columns, disable=not progress, transient=False) as bar, _sigterm_raises():
        task = bar.add_task("denoising", total=len(todo))
        if workers == 1:
            if todo:
                _init_worker(method, options)
            for job in todo:
                record(job, _run_in_worker(job, method, sigma, options))
                bar.advance(task)
        else:
            def advance(job: Job, outcome: tuple[str | None, str | None]) -> None:
                record(job, outcome)
                bar.advance(task)

            _run_pool(todo, workers, method, sigma, options, advance)
    return report


def _run_pool(todo: list[Job], workers: int, method: str, sigma: float | NoiseModel | None, options: dict, done) -> None:
    """Run ``todo`` on ``workers`` processes, calling ``done(job, (failure, note))`` for each job.

    At most two jobs per worker are queued at a time, so an interruption leaves little
    behind. When a worker dies (the OOM killer), the jobs that were in flight become suspects
    and are retried one at a time on a fresh pool: a suspect whose worker dies again is the
    culprit and fails with that reason; the others are written as usual.
    """
    queue: deque[Job] = deque(todo)
    suspects: deque[Job] = deque()
    while queue or suspects:
        isolating = bool(suspects)
        source = suspects if isolating else queue
        limit = 1 if isolating else 2 * workers
        pool = ProcessPoolExecutor(max_workers=1 if isolating else min(workers, len(queue)),
                                   initializer=_init_pool_worker, initargs=(method, options, os.getpid()))
        in_flight: dict[Future, Job] = {}
        broken = False
        try:
            pool.submit(_raise_init_error).result()  # bad weights: one error, not one per file
            while (source or in_flight) and not broken:
                while source and len(in_flight) < limit:
                    job = source.popleft()
                    in_flight[pool.submit(_run_in_worker, job, method, sigma, options)] = job
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True  # the job stays in flight: handled below
                        continue
                    done(in_flight.pop(future), outcome)
        except BrokenProcessPool:
            broken = True
        except BaseException:
            _kill_pool(pool)
            raise
        if not broken:
            pool.shutdown(wait=True)
            continue
        _kill_pool(pool)
        if not in_flight:  # the workers died while starting: nothing would ever run
            while source:
                job = source.popleft()
                done(job, (f"{job.source}: worker processes could not start", None))
            continue
        for job in in_flight.values():
            if isolating:
                done(job, (f"{job.source}: the worker process died while denoising it, twice (killed, or out of memory)", None))
            else:
                suspects.append(job)


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    return workers
