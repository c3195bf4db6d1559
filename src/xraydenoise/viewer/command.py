"""The ``xraydenoise view`` command (registered in :mod:`xraydenoise.cli`).

Kept free of heavy imports at module level, so that the command line starts fast.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

DEFAULT_PORT = 8765
#: Shown before the method list; the rest of list_methods() follows.
PREFERRED_ORDER = ("network", "bm3d", "nlm")


def _fail(message: str) -> None:
    from ..terminal import fail

    fail(message)


def find_images(inputs: list[str]) -> tuple[list[Path], list[str], list[str]]:
    """Files, folders (recursively) and glob patterns as (paths, page labels, error lines).

    Uses the batch command's expansion, one input at a time (two inputs may hold files of the
    same name, which a viewer, unlike a batch run, can show side by side). A file given twice
    is listed once.
    """
    from ..batch import plan_jobs

    unused = Path(tempfile.gettempdir()) / f"xraydenoise-view-{os.getpid()}-no-output"
    paths: list[Path] = []
    names: list[str] = []
    errors: list[str] = []
    seen: set[Path] = set()
    for item in inputs:
        plan = plan_jobs([item], unused)
        errors += [f"{path}: {reason}" for path, reason in plan.problems]
        root = Path(item)
        for job in plan.jobs:
            key = job.source.resolve()
            if key in seen:
                continue
            seen.add(key)
            paths.append(job.source)
            names.append(str(job.source.relative_to(root)) if root.is_dir() else job.source.name)
    return paths, names, errors


def resolve_methods(extra: list[str]) -> tuple[list[str], list[str], int]:
    """The method list of the page: (names for get_denoiser, labels, index of the first shown).

    Every :func:`~xraydenoise.denoisers.list_methods` name, then the weights files given with
    ``--method``; the first ``--method`` is the one selected at start (default: network).
    Raises ConfigError for an unknown name or a weights file that is missing or a pickle.
    """
    from ..denoisers import list_methods
    from ..errors import ConfigError
    from ..weights import PICKLE_SUFFIXES

    known = list_methods()
    methods = [m for m in PREFERRED_ORDER if m in known] + [m for m in known if m not in PREFERRED_ORDER]
    labels = list(methods)
    first = None
    for name in extra:
        suffix = Path(name).suffix.lower()
        if name in known:
            index = methods.index(name)
        elif suffix in PICKLE_SUFFIXES:
            raise ConfigError(f"{name}: {suffix} weights are pickles, which can run code, and are never loaded; "
                              "use a .safetensors file (with its .json model card) or .onnx")
        elif suffix in (".safetensors", ".onnx"):
            if not Path(name).is_file():
                raise ConfigError(f"{name}: no such weights file")
            methods.append(str(Path(name)))
            labels.append(Path(name).name)
            index = len(methods) - 1
        else:
            raise ConfigError(f"unknown method {name!r}; use one of {', '.join(known)} or a .safetensors/.onnx file")
        first = index if first is None else first
    return methods, labels, first or 0


def view(
    inputs: List[str] = typer.Argument(..., help="Image files, folders (searched recursively) or glob patterns."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The default is this machine only; "
                             "anything else lets other machines see the images."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser; just print the address."),
    method: Optional[List[str]] = typer.Option(None, "--method", "-m", help="Method shown first (network, bm3d, nlm, ...), "
                                               "or a .safetensors/.onnx network added to the list; may be repeated."),
) -> None:
    """Look at radiographs and their denoised versions in the browser before trusting them.

    Serves a local page: the original and the denoised image with a before/after slider,
    synchronised zoom and pan at full resolution, window/level, the difference map with its
    colour bar, a method switch and the noise estimate. Results are computed on demand and
    kept in memory. Stop with Ctrl-C.
    """
    from ..errors import XRayDenoiseError
    from ..terminal import EXIT_BAD_INPUT, console, out
    from .server import ViewerServer, ViewerState

    if not 0 <= port <= 65535:
        _fail(f"--port must be between 0 and 65535, got {port}")
    try:
        methods, labels, first = resolve_methods(list(method or []))
        paths, names, errors = find_images(list(inputs))
    except XRayDenoiseError as exc:
        _fail(str(exc))
    for line in errors:
        console.print(f"error: {line}", soft_wrap=True)
    if not paths:
        if errors:  # each input already has its one error line
            raise typer.Exit(EXIT_BAD_INPUT)
        _fail("no images found in " + ", ".join(inputs))
    # The page opens on the first --method: it goes first in the list order the page uses.
    order = [first] + [i for i in range(len(methods)) if i != first]
    state = ViewerState(paths, names, [methods[i] for i in order], [labels[i] for i in order])
    try:
        server = ViewerServer(state, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            _fail(f"port {port} is in use; choose another with --port (0 picks a free one)")
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    if not server.loopback_only:
        console.print(f"warning: listening on {host}: other machines can see these images", soft_wrap=True)
    out.print(f"xraydenoise view: {len(paths)} image(s) at {server.url}  (Ctrl-C to stop)", soft_wrap=True)
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
