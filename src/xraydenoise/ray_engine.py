"""Denoise a planned batch on a Ray cluster: ``xraydenoise denoise ... --engine ray``.

The same run as :func:`xraydenoise.batch.run_batch`, spread over the actors of a Ray cluster
with Ray Data (``from_items`` of the planned jobs, ``map_batches`` with an actor class):

* the plan is the local engine's (:func:`~xraydenoise.batch.plan_jobs`: naming, mirroring,
  collision checks), and so is the decision of what is left to do: stale temporary files of
  dead writers are removed, finished outputs are skipped unless ``overwrite``;
* each actor builds its denoiser once (:func:`~xraydenoise.batch._init_worker`, i.e.
  ``get_denoiser(method, **options)``) and writes every file through the local engine's own
  :func:`~xraydenoise.batch.process_one` (atomic writes, DICOM rules), so the files are
  byte-identical to the local engine's; failures are the same one-line messages;
* one job is one block and an actor runs one at a time: results stream back to the driver as
  each file is written (progress: done/total and images per second), a rerun after a kill
  finds every finished output complete and skips it;
* an actor that dies (killed, out of memory) is restarted by Ray and its file retried once;
  a file whose actor dies twice fails alone, with the local engine's message;
* without ``address`` a local Ray cluster is started for the run and stopped after it (its
  processes die with the command, even on SIGKILL); with ``address`` the run connects to that
  cluster and leaves it running. Ray's own messages go to a log file, not the terminal.

Inputs and outputs must be at the same paths on every node (a shared file system), and the
nodes need this package installed; relative paths are taken from the driver's folder.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

from rich.console import Console
from rich.progress import ProgressColumn
from rich.text import Text

from .batch import BatchReport, Job, jobs_to_do
from .errors import ConfigError, MissingDependencyError, XRayDenoiseError
from .io._atomic import remove_stale_partials
from .io._messages import one_line

INSTALL_HINT = "ray is not installed: pip install 'xraydenoise[ray]'"
#: The local engine's message for a file whose worker died on it twice (batch._run_pool).
DIED_TWICE = "the worker process died while denoising it, twice (killed, or out of memory)"
#: Thread settings the actors take from the driver instead of Ray's (which sets OMP_NUM_THREADS
#: to an actor's CPU count): PyTorch's results depend on its thread count in the last bit, so
#: an actor computes with the threads the local engine would use, and writes the same bytes.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Object store of a local cluster: only paths and short messages travel through it.
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20


def require_ray():
    """The ``ray`` module with Ray Data, or MissingDependencyError naming the extra."""
    try:
        import ray
        import ray.data  # the extra is ray[data]
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None
    return ray


def check_gpus_per_worker(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"--gpus-per-worker must be a positive number of GPUs (e.g. 1 or 0.5), got {value}")
    return float(value)


def check_device_name(device: str) -> str:
    """``device`` checked for its form only: the GPUs are on the cluster's nodes, not
    necessarily here, so each actor resolves it (:func:`~xraydenoise.hardware.resolve_device`)."""
    text = device.strip().lower()
    if text in ("auto", "cpu", "cuda", "gpu") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")


# --------------------------------------------------------------------------- the actor


class DenoiseActor:
    """A Ray Data actor: one denoiser, built once, for every file it is given."""

    def __init__(self, method: str, sigma, options: dict, cwd: str, thread_env: dict) -> None:
        for name, value in thread_env.items():  # before torch is imported, which reads them once
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "torch" in sys.modules and (thread_env.get("OMP_NUM_THREADS") or "").isdigit():
            sys.modules["torch"].set_num_threads(int(thread_env["OMP_NUM_THREADS"]))
        from . import batch

        # The raylet that started this actor dies with a local cluster's driver (Ray's fate
        # sharing); this actor then dies at once, as the local engine's workers do, instead of
        # finishing the file it holds after the command has ended.
        batch._die_with_parent(os.getppid())
        # Relative inputs and outputs are the driver's; where its folder is not on this
        # node, such paths fail per file with the reader's own message.
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        self.method, self.sigma, self.options = method, sigma, options
        self.init_error = None
        try:
            batch._init_worker(method, options)
        except XRayDenoiseError as exc:  # bad weights: reported once by the driver
            self.init_error = str(exc)

    def __call__(self, rows: dict) -> dict:
        from . import batch

        failures, notes = [], []
        for source, target in zip(rows["source"], rows["target"]):
            if self.init_error is not None:
                failures.append(self.init_error)
                notes.append("")
                continue
            job = Job(Path(str(source)), Path(str(target)))
            # A retry after this actor's predecessor died: its temporary file goes.
            remove_stale_partials(job.target)
            failure, note = batch._run_in_worker(job, self.method, self.sigma, self.options)
            failures.append(failure or "")
            notes.append(note or "")
        count = len(failures)
        return {
            "index": rows["index"],
            "failure": failures,
            "note": notes,
            "init_error": [self.init_error is not None] * count,
        }


# --------------------------------------------------------------------------- Ray's output


class _Router(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` while Ray runs: our own lines to the terminal, anything
    else (Ray's loggers, warnings and relayed worker messages, from any thread) to the log."""

    def __init__(self, terminal, log, ours: threading.local) -> None:
        self._terminal, self._log, self._ours = terminal, log, ours

    def _target(self):
        if getattr(self._ours, "on", False):
            return self._terminal
        return self._log  # None after the run: Ray's late messages are dropped

    def write(self, text: str) -> int:
        target = self._target()
        if target is not None:
            target.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in (self._terminal, self._log):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._terminal, "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._terminal.fileno()

    @property
    def encoding(self):  # type: ignore[override]  # TextIOBase declares a plain attribute
        return getattr(self._terminal, "encoding", None) or "utf-8"

    def close_log(self) -> None:
        self.flush()
        self._log = None


class _Messages:
    """Where Ray's messages go during a run: an unlinked temporary file (nothing is left
    behind, even by a killed run), saved under a name only when the run fails."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="xraydenoise-ray-", suffix=".log")
        os.unlink(name)
        self.fd = fd
        self._ours = threading.local()

    @contextlib.contextmanager
    def ours(self):
        """Lines written within the block reach the terminal."""
        self._ours.on = True
        try:
            yield
        finally:
            self._ours.on = False

    @contextlib.contextmanager
    def captured(self):
        """Within the block file descriptor 2 (Ray's C++ logs) and every write to sys.stdout
        or sys.stderr but ours go to the log. Descriptor 1 stays: the progress bar is there."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        original_out, original_err = sys.stdout, sys.stderr
        saved_fd = os.dup(2)
        terminal_err = opened = None
        if hasattr(original_err, "rich_proxied_file"):  # a live progress display prints it through its console
            terminal_err = original_err
        else:
            try:
                on_fd2 = original_err.fileno() == 2
            except (AttributeError, OSError, ValueError):
                on_fd2 = False
            terminal_err = opened = open(  # noqa: SIM115 - open for the block, closed below
                saved_fd, "w", buffering=1, encoding=getattr(original_err, "encoding", None) or "utf-8",
                errors="backslashreplace", closefd=False) if on_fd2 else original_err
        log = open(self.fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115 - closed below
        routers = (_Router(original_out, log, self._ours), _Router(terminal_err, log, self._ours))
        os.dup2(self.fd, 2)
        sys.stdout, sys.stderr = routers
        try:
            yield
        finally:
            for router in routers:
                router.close_log()
            with contextlib.suppress(Exception):
                log.close()
            os.dup2(saved_fd, 2)
            if sys.stdout is routers[0]:
                sys.stdout = original_out
            if sys.stderr is routers[1]:
                sys.stderr = original_err
            if opened is not None:
                with contextlib.suppress(Exception):
                    opened.close()
            os.close(saved_fd)

    def save(self) -> Path:
        """The log under a name in the temporary folder, for an error message."""
        fd, name = tempfile.mkstemp(prefix="xraydenoise-ray-", suffix=".log")
        with os.fdopen(fd, "wb") as out:
            os.lseek(self.fd, 0, os.SEEK_SET)
            while chunk := os.read(self.fd, 1 << 20):
                out.write(chunk)
        return Path(name)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


# --------------------------------------------------------------------------- the run


def _with_warnings_off(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _connect(ray, address: str | None, workers: int | None):
    """Connect (or start a local cluster); returns whether this run must shut Ray down."""
    import logging

    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    if ray.is_initialized():  # the caller's own connection: used as it is, left open
        return False
    if address is None:
        from .inference import default_threads

        try:
            _with_warnings_off(ray.init, address="local", num_cpus=max(workers or 1, default_threads()),
                               object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds
            raise XRayDenoiseError(f"could not start a local Ray cluster: {type(exc).__name__}: {one_line(exc)}") from None
        return True
    try:
        _with_warnings_off(ray.init, address=address, **common)
    except Exception as exc:  # noqa: BLE001 - Ray raises many kinds
        cause = exc.__cause__ or exc  # "Failed to connect" wraps the reason (no route, a missing token...)
        raise XRayDenoiseError(f"--address {address}: cannot connect to a Ray cluster there: {type(cause).__name__}: {one_line(cause)}") from None
    return True


def _pool_size(ray, workers: int | None, gpus_per_worker: float | None, jobs: int) -> int:
    resources = ray.cluster_resources()
    if gpus_per_worker:
        gpus = float(resources.get("GPU", 0))
        if gpus < gpus_per_worker:
            raise ConfigError(f"--gpus-per-worker {gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s)")
        fits = int(gpus // gpus_per_worker + 1e-9)
    else:
        fits = int(float(resources.get("CPU", 1)))
    return max(1, min(workers or fits, jobs))


def _dataset(ray, todo: list[Job], actors: int, method, sigma, options, gpus_per_worker):
    rows = [{"index": i, "source": str(job.source), "target": str(job.target)} for i, job in enumerate(todo)]
    # One job per block: an actor's death retries (or fails) that one file only.
    blocks = "override_num_blocks" if "override_num_blocks" in inspect.signature(ray.data.from_items).parameters else "parallelism"
    ds = ray.data.from_items(rows, **{blocks: len(rows)})
    map_batches = ds.map_batches
    extra = {}
    params = inspect.signature(map_batches).parameters
    if "max_task_retries" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        extra["max_task_retries"] = 1  # Ray's default retries forever: a file that always kills its actor would hang the run
    return _with_warnings_off(
        map_batches,
        DenoiseActor,
        fn_constructor_args=(method, sigma, options, os.getcwd(), {name: os.environ.get(name) for name in THREAD_VARIABLES}),
        batch_size=1,
        batch_format="numpy",
        # A fixed pool, one file in flight per actor: a death touches only the file being written.
        compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
        num_cpus=1,
        num_gpus=gpus_per_worker or 0,
        **extra,
    )


def _configure_data(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours shows done/total and images per second
    ctx.max_errored_blocks = -1  # a file whose actor died twice fails alone; the run goes on
    with contextlib.suppress(Exception):
        ctx.execution_options.preserve_order = False  # results as they finish


class _RateColumn(ProgressColumn):
    """Images per second since the workers were asked to start."""

    def render(self, task) -> Text:
        if not task.completed or not task.elapsed:
            return Text("- images/s")
        return Text(f"{task.completed / task.elapsed:.2f} images/s")


def run_ray(
    jobs: list[Job],
    *,
    method: str,
    sigma=None,
    options: dict | None = None,
    overwrite: bool = False,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float | None = None,
    progress: bool = True,
    on_failure=None,
    on_note=None,
) -> BatchReport:
    """:func:`~xraydenoise.batch.run_batch` on a Ray cluster; returns the same report.

    ``workers`` is the number of actors (default: one per CPU of the cluster, or per
    ``gpus_per_worker`` GPUs), capped by the number of files to do. ``address`` is a running
    cluster's (``host:port`` or ``auto``); without it a local cluster is started for the run
    and stopped after it. ``gpus_per_worker`` GPUs are reserved by each actor.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .batch import _sigterm_raises
    from .denoisers import check_noise

    ray = require_ray()
    options = options or {}
    sigma = check_noise(sigma)
    gpus_per_worker = check_gpus_per_worker(gpus_per_worker)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    report, todo = jobs_to_do(jobs, overwrite=overwrite, on_failure=on_failure)  # exactly the local engine's rule
    if not todo:  # nothing to do: no cluster
        return report

    def record(job: Job, failure: str | None, note: str | None, say) -> None:
        if note and note not in report.notes:
            report.notes.append(note)
            if on_note:
                with say():
                    on_note(note)
        if failure is None:
            report.done.append(job.target)
        else:
            report.failed.append((job.source, failure))
            if on_failure:
                with say():
                    on_failure(failure)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn()]
    messages = _Messages()
    try:
        # Its own console on today's stdout: while Ray runs, sys.stdout leads to the log.
        with Progress(*columns, console=Console(file=sys.stdout), disable=not progress, transient=False) as bar, messages.captured():
            task = bar.add_task("starting Ray", total=len(todo), start=False)
            shutdown = False
            try:
                shutdown = _connect(ray, address, workers)
                with _sigterm_raises():  # after ray.init, which sets its own SIGTERM handler
                    _configure_data(ray)
                    actors = _pool_size(ray, workers, gpus_per_worker, len(todo))
                    ds = _dataset(ray, todo, actors, method, sigma, options, gpus_per_worker)
                    bar.update(task, description=f"denoising (ray, {actors} worker{'s' if actors > 1 else ''})")
                    bar.start_task(task)
                    seen: set[int] = set()
                    for row in ds.iter_rows():
                        index = int(row["index"])
                        if bool(row["init_error"]):  # the denoiser cannot be built: one error, not one per file
                            raise XRayDenoiseError(str(row["failure"]))
                        if index in seen:
                            continue
                        seen.add(index)
                        record(todo[index], str(row["failure"]) or None, str(row["note"]) or None, messages.ours)
                        bar.advance(task)
                    for index, job in enumerate(todo):
                        if index not in seen:  # its block failed: its actor died on it twice
                            record(job, f"{job.source}: {DIED_TWICE}", None, messages.ours)
                            bar.advance(task)
            except (XRayDenoiseError, KeyboardInterrupt):
                raise
            except Exception as exc:  # noqa: BLE001 - Ray's failures become one line
                raise XRayDenoiseError(f"the Ray run failed: {type(exc).__name__}: {one_line(exc)} (Ray's messages: {messages.save()})") from None
            finally:
                if shutdown:
                    with contextlib.suppress(Exception), _sigterm_raises():
                        ray.shutdown()
    finally:
        messages.close()
    return report


__all__ = ["INSTALL_HINT", "DenoiseActor", "check_device_name", "check_gpus_per_worker", "require_ray", "run_ray"]
