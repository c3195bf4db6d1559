"""Denoise many files: folders recursively, mirrored output tree, resumable, per-file failures.

A run that is killed part way leaves only complete outputs (each is written to a temporary
name and renamed), so a rerun skips what exists and finishes the rest.
"""

from __future__ import annotations

import glob
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ImageWriteError, XRayDenoiseError
from .io import is_supported_path, load_image, save_image


@dataclass
class Job:
    source: Path
    target: Path


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def collect_jobs(inputs: list[str], out_dir: Path, *, suffix: str | None = None) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Expand files, folders (recursively) and globs into (input, output) pairs.

    A folder's files keep their path relative to that folder under ``out_dir``; single files
    go straight into ``out_dir``. ``suffix`` changes the output format (default: the input's).
    """
    jobs: list[Job] = []
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        matches = [Path(p) for p in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        if not matches:
            problems.append((Path(item), "no file matches this pattern"))
        for path in matches:
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and is_supported_path(p) and not p.name.startswith("."))
                if not files:
                    problems.append((path, "folder contains no supported image (png, tif, tiff, dcm)"))
                for file in files:
                    rel = file.relative_to(path)
                    jobs.append(Job(file, _with_suffix(out_dir / rel, suffix)))
            elif path.exists():
                jobs.append(Job(path, _with_suffix(out_dir / path.name, suffix)))
            else:
                problems.append((path, "no such file or folder"))
    return jobs, problems


def _with_suffix(path: Path, suffix: str | None) -> Path:
    return path.with_suffix(suffix) if suffix else path


# One denoiser per worker process, built once.
_WORKER_DENOISER = None


def _init_worker(method: str, options: dict) -> None:
    global _WORKER_DENOISER
    from .denoisers import get_denoiser

    _WORKER_DENOISER = (method, get_denoiser(method, **options) if method else None)


_WORKER_INIT_ERROR: XRayDenoiseError | None = None


def _init_pool_worker(method: str, options: dict) -> None:
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


def _remove_stale_partials(target: Path) -> None:
    """Delete temporary files a killed run left for this output (named like io's atomic writer's)."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.partial"):
        stale.unlink(missing_ok=True)


def process_one(job: Job, method: str, sigma: float | None, options: dict, *, overwrite: bool) -> str:
    """Denoise one file; returns "done" or "skipped"; raises XRayDenoiseError on bad input."""
    from .denoisers import get_denoiser

    if job.target.resolve() == job.source.resolve():
        raise ImageWriteError(f"{job.target}: output path equals the input; refusing to overwrite the input")
    if job.target.is_dir():  # not a finished output to skip, and not ours to replace
        raise ImageWriteError(f"{job.target}: is a directory; cannot write the output there")
    if job.target.exists() and not overwrite:
        return "skipped"
    _remove_stale_partials(job.target)
    image = load_image(job.source)
    denoiser = _WORKER_DENOISER[1] if _WORKER_DENOISER and _WORKER_DENOISER[0] == method else get_denoiser(method, **options)
    result = denoiser(image.to_float(), sigma)
    save_image(job.target, image.with_float(result), method=method)
    return "done"


def _run_in_worker(job: Job, method: str, sigma: float | None, options: dict, overwrite: bool) -> tuple[str, str | None]:
    try:
        return process_one(job, method, sigma, options, overwrite=overwrite), None
    except XRayDenoiseError as exc:
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - one broken file must not stop a batch of thousands
        return "failed", f"{job.source}: unexpected error: {type(exc).__name__}: {exc}"


def run_batch(
    jobs: list[Job],
    *,
    method: str,
    sigma: float | None = None,
    options: dict | None = None,
    overwrite: bool = False,
    workers: int = 1,
    progress: bool = True,
    on_failure=None,
) -> BatchReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    options = options or {}
    report = BatchReport()
    columns = [TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]

    def record(job: Job, status: str, message: str | None) -> None:
        if status == "done":
            report.done.append(job.target)
        elif status == "skipped":
            report.skipped.append(job.target)
        else:
            report.failed.append((job.source, message or "failed"))
            if on_failure:
                on_failure(message)

    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("denoising", total=len(jobs))
        if workers <= 1:
            _init_worker(method, options) if jobs else None
            for job in jobs:
                record(job, *_run_in_worker(job, method, sigma, options, overwrite))
                bar.advance(task)
        else:
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_pool_worker, initargs=(method, options)) as pool:
                pool.submit(_raise_init_error).result()  # bad weights: one error, not one per file
                futures = {pool.submit(_run_in_worker, job, method, sigma, options, overwrite): job for job in jobs}
                for future in as_completed(futures):
                    record(futures[future], *future.result())
                    bar.advance(task)
    return report

