"""The ``xraydenoise`` command: denoise, noise, score, evaluate, train, export, report, demo.

Every error a user can cause ends in one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional, cast

import typer

from .errors import ConfigError, XRayDenoiseError
from .inference import MIN_TILE
from .terminal import EXIT_BAD_INPUT, console, fail, out
from .weights import PICKLE_SUFFIXES

if TYPE_CHECKING:  # pragma: no cover
    from .noise import NoiseModel
    from .training.config import TrainConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help shown as typed: "pg:A:S" is not an emoji code, [x] not a tag
    help="Denoise X-ray radiographs (PNG, TIFF, DICOM) with a pretrained network or classical filters, and measure it.",
)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"xraydenoise {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Denoise X-ray radiographs (PNG, TIFF, DICOM) with a pretrained network or classical filters, and measure it."""


def _sigma(value: Optional[float]) -> Optional[float]:
    """--sigma is in grey levels of an 8-bit scale (the literature's "sigma 25" = 25/255)."""
    if value is None:
        return None
    if not (math.isfinite(value) and 0 <= value <= 255):
        fail(f"--sigma must be a number of grey levels from 0 to 255, got {value}")
    return value / 255.0


@app.command()
def denoise(
    inputs: List[str] = typer.Argument(..., help="Files, folders (searched recursively) or glob patterns."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="Output folder; folder inputs are mirrored below it."),
    method: str = typer.Option("network", "--method", "-m", help="network (the shipped pretrained network), a .safetensors/.onnx file, or a classical filter: gaussian, median, wavelet, tv, nlm, bm3d."),
    sigma: Optional[float] = typer.Option(None, help="Noise std in 8-bit grey levels (25 = 25/255); its correlation is still estimated from each image. Default: level and correlation estimated from each image."),
    noise_spec: Optional[str] = typer.Option(None, "--noise", help="The detector's noise model, e.g. 10@gauss:1 or pg:0.01:3@exp:0.7 (the syntax of evaluate --levels; 'xraydenoise noise --help'), told to the network and the filters instead of estimating it."),
    backend: Optional[str] = typer.Option(None, help="Network backend: auto (default: the fastest of torch, torch-bf16 and onnxruntime that matches torch fp32 within 0.01 dB, measured once on this machine), torch (fp32), torch-bf16 (bf16 autocast, channels-last) or onnxruntime."),
    device: Optional[str] = typer.Option(None, help="Network device: auto (default: the first GPU if any), cpu, cuda or cuda:N."),
    tile: Optional[int] = typer.Option(None, help=f"Network tile side in pixels, at least {MIN_TILE} (default: chosen from image size and free memory; the result does not depend on it)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Parallel worker processes (at most one per file); default 1. With --engine ray: the Ray actors (default: one per CPU of the cluster, or per --gpus-per-worker GPUs)."),
    engine: str = typer.Option("local", "--engine", help="local (worker processes on this machine) or ray (actors on a Ray cluster; the same outputs; pip install 'xraydenoise[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="With --engine ray: the running Ray cluster to use (host:port or auto). Default: a local cluster started for the run and stopped after it."),
    gpus_per_worker: Optional[float] = typer.Option(None, "--gpus-per-worker", help="With --engine ray: GPUs each actor reserves (e.g. 1, or 0.5 for two actors per GPU)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that already exist (default: skip them, so a rerun resumes)."),
    output_format: Optional[str] = typer.Option(None, "--format", help="Write png, tiff or dcm instead of the input's format."),
) -> None:
    """Denoise radiographs, writing each output in the format it was read (bit depth and DICOM header kept).

    Every output is planned before anything runs: the run is refused when an output would
    overwrite an input or two inputs would share an output.
    """
    from .batch import OutputCollisionError, plan_jobs, run_batch
    from .denoisers import is_network

    suffix = None
    if output_format:
        suffix = {"png": ".png", "tif": ".tif", "tiff": ".tif", "dcm": ".dcm", "dicom": ".dcm"}.get(output_format.lower())
        if suffix is None:
            fail(f"--format must be png, tiff or dcm, got {output_format!r}")
    if Path(method).suffix.lower() in PICKLE_SUFFIXES:
        fail(f"{method}: {Path(method).suffix} weights are pickles, which can run code, and are never loaded; "
             "use a .safetensors file (with its .json model card) or .onnx")
    sigma_unit: float | NoiseModel | None = _sigma(sigma)
    if noise_spec is not None:
        if sigma is not None:
            fail("give --sigma or --noise, not both")
        from .noise import parse_noise

        try:
            sigma_unit = parse_noise(noise_spec)
        except XRayDenoiseError as exc:
            fail(f"--noise: {exc}")
    network = is_network(method)
    if tile is not None and tile < MIN_TILE:
        fail(f"--tile must be at least {MIN_TILE} pixels (or left out for automatic), got {tile}")
    if backend is not None and backend not in ("auto", "torch", "torch-bf16", "onnxruntime"):
        fail(f"--backend must be auto, torch, torch-bf16 or onnxruntime, got {backend!r}")
    if not network and (backend is not None or tile is not None or device is not None):
        fail(f"--backend, --device and --tile apply to networks; the {method} filter does not use them")
    if engine not in ("local", "ray"):
        fail(f"--engine must be local or ray, got {engine!r}")
    if engine != "ray" and (address is not None or gpus_per_worker is not None):
        fail("--address and --gpus-per-worker apply to --engine ray")
    if engine == "ray":
        from .ray_engine import check_gpus_per_worker, require_ray

        try:
            require_ray()
            check_gpus_per_worker(gpus_per_worker)
        except XRayDenoiseError as exc:
            fail(str(exc))
        if gpus_per_worker is not None and not network:
            fail(f"--gpus-per-worker applies to networks; the {method} filter does not use a GPU")
    if device is not None:
        from .hardware import resolve_device
        from .ray_engine import check_device_name

        try:  # with Ray the GPUs are on the cluster's nodes: each actor resolves the device
            device = resolve_device(device) if engine == "local" else check_device_name(device)
        except XRayDenoiseError as exc:
            fail(str(exc))
    fast = True if backend == "torch-bf16" else None
    backend = "torch" if backend == "torch-bf16" else backend
    options = {k: v for k, v in {"backend": backend, "fast": fast, "tile": tile, "device": device}.items() if v is not None} if network else {}
    try:
        from .denoisers import NetworkDenoiser, get_denoiser

        if not network:
            get_denoiser(method)  # unknown methods fail before any file is touched
        plan = plan_jobs(inputs, out_dir, suffix=suffix)
    except OutputCollisionError as exc:
        for line in exc.lines:
            console.print(f"error: {line}", soft_wrap=True)
        console.print(f"nothing was written: {len(exc.lines)} output conflict(s)", soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except XRayDenoiseError as exc:
        fail(str(exc))
    if network and sigma_unit is not None:
        try:
            blind = not cast(NetworkDenoiser, get_denoiser(method, **options)).noise_channels  # a network
        except XRayDenoiseError as exc:
            fail(str(exc))
        if blind:
            given = "--sigma" if noise_spec is None else "--noise"
            console.print(f"note: the network {method} is blind (it reads only the image); {given} is not used", soft_wrap=True)
    for path, reason in plan.problems:
        console.print(f"error: {path}: {reason}", soft_wrap=True)
    for note in plan.notes:
        console.print(f"note: {note}", soft_wrap=True)
    if not plan.jobs:
        if plan.problems:  # each input already has its one error line
            raise typer.Exit(EXIT_BAD_INPUT)
        fail("nothing to denoise")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{out_dir}: cannot create output folder ({exc.strerror or exc})")
    runner: Callable[..., Any]
    engine_options: dict[str, Any]
    if engine == "ray":
        from .ray_engine import run_ray

        runner, engine_options = run_ray, {"workers": workers, "address": address, "gpus_per_worker": gpus_per_worker}
    else:
        runner, engine_options = run_batch, {"workers": workers or 1}
    try:
        report = runner(
            plan.jobs,
            method=method,
            sigma=sigma_unit,
            options=options,
            overwrite=overwrite,
            **engine_options,
            on_failure=lambda msg: console.print(f"error: {msg}", soft_wrap=True),
            on_note=lambda msg: console.print(f"note: {msg}", soft_wrap=True),
        )
    except XRayDenoiseError as exc:
        fail(str(exc))
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the workers are already gone
        from .batch import Terminated

        console.print("interrupted: every output written so far is complete; rerun the same command to finish", soft_wrap=True)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    failed = len(report.failed) + len(plan.problems)
    console.print(f"{len(report.done)} denoised, {len(report.skipped)} skipped (already done), {failed} failed")
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def noise(
    input: Path = typer.Argument(..., help="Clean image."),  # noqa: A002 - the argument's name in --help
    output: Path = typer.Option(..., "-o", "--out", help="Noisy image to write (format from its suffix)."),
    sigma: Optional[float] = typer.Option(None, help="Gaussian noise std in 8-bit grey levels (25 = 25/255)."),
    poisson: Optional[float] = typer.Option(None, help="Poisson gain a of z = a*Poisson(x/a) + N(0, s^2) on the [0,1] scale."),
    gaussian: float = typer.Option(0.0, help="With --poisson: electronic noise std s in 8-bit grey levels."),
    noise_spec: Optional[str] = typer.Option(None, "--noise", help="Any noise model in the text form of --levels, e.g. 10@gauss:1 (correlated) or pg:0.01:3@exp:0.7."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same noise on every machine."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Add reproducible noise (white, Poisson-Gaussian or detector-correlated) to make a test pair.

    Integer formats cannot hold values outside the range, so the noisy image is clipped
    there; a float TIFF output keeps the unclipped noise.
    """
    from .io import load_image, save_image
    from .noise import GaussianNoise, PoissonGaussianNoise, parse_noise

    if sum(option is not None for option in (sigma, poisson, noise_spec)) != 1:
        fail("give exactly one of --sigma S, --poisson A [--gaussian S] or --noise SPEC")
    try:
        if noise_spec is not None:
            model = parse_noise(noise_spec)
        elif sigma is not None:
            model = GaussianNoise(sigma / 255.0)
        else:
            assert poisson is not None  # exactly one of the three, checked above
            model = PoissonGaussianNoise(poisson, gaussian / 255.0)
        image = load_image(input)
        noisy = model(image.to_float(), seed=seed)
        save_image(output, image.with_float(noisy), method=f"noise {model.label} seed {seed}", overwrite=overwrite)
    except XRayDenoiseError as exc:
        fail(str(exc))
    console.print(f"wrote {output} ({model.label}, seed {seed})", highlight=False)


@app.command()
def score(
    clean: Path = typer.Argument(..., help="Reference (clean) image."),
    denoised: List[Path] = typer.Argument(..., help="One or more images to score against it."),
) -> None:
    """Print PSNR (dB) and SSIM of images against a clean reference (data range 1)."""
    from .io import load_image
    from .metrics import psnr, ssim

    try:
        ref = load_image(clean).to_float()
        for path in denoised:
            test = load_image(path).to_float()
            if test.shape != ref.shape:
                fail(f"{path}: size {test.shape[1]}x{test.shape[0]} differs from the reference {ref.shape[1]}x{ref.shape[0]}")
            out.print(f"{path}\tPSNR {psnr(ref, test):.3f} dB\tSSIM {ssim(ref, test):.4f}", highlight=False)
    except XRayDenoiseError as exc:
        fail(str(exc))


@app.command()
def evaluate(
    methods: str = typer.Option("gaussian,median,wavelet,tv,nlm,bm3d,network", help="Comma-separated methods (names or weights files)."),
    levels: str = typer.Option("10,25,50,pg:0.01:5", help="Comma-separated noise: Gaussian sigma in grey levels, or pg:A:S."),
    split: str = typer.Option("test", help="train, val or test split of the data set, or all (every image)."),
    data: Optional[Path] = typer.Option(None, help="Data folder (default: the XRAYDENOISE_DATA setting)."),
    limit: int = typer.Option(0, help="Use only the first N images (0: all)."),
    size: int = typer.Option(512, help="Downscale images so the long side is at most this (0: native size)."),
    seed: int = typer.Option(0),
    output: Path = typer.Option(Path("results/evaluate.csv"), "-o", "--out", help="Per-image results (.csv or .jsonl)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute every score."),
) -> None:
    """Score methods on a split with synthetic noise; write per-image rows and print a summary."""
    from .data import get_split, make_splits, read_dataset
    from .evaluation.runner import ScoreCache, default_cache, summarise, write_rows
    from .evaluation.runner import evaluate as run_eval
    from .evaluation.tables import print_summary

    if split not in ("train", "val", "test", "all"):
        fail(f"--split must be train, val, test or all, got {split!r}")
    if size < 0 or limit < 0:
        fail(f"--size and --limit must be >= 0 (0: native size / all images), got {size} and {limit}")
    try:
        if data is None:
            records = [r for name in ("train", "val", "test") for r in get_split(name)] if split == "all" else get_split(split)
        else:
            everything = read_dataset(data)
            if not everything:
                fail(f"{data}: no radiographs found (PNG, TIFF or DICOM, with or without a manifest.csv)")
            records = everything if split == "all" else make_splits(everything)[split]
            if not records:
                fail(f"{data}: the {split} split of its {len(everything)} image(s) is empty; use --split all")
        if limit:
            records = records[:limit]
        rows = run_eval(
            records,
            [m.strip() for m in methods.split(",") if m.strip()],
            [lv.strip() for lv in levels.split(",") if lv.strip()],
            size=size or None,
            seed=seed,
            cache=ScoreCache(None) if no_cache else default_cache(),
        )
        write_rows(rows, output)
    except XRayDenoiseError as exc:
        fail(str(exc))
    print_summary(summarise(rows), out)
    console.print(f"{len(rows)} rows written to {output}", highlight=False)


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML training config (see configs/); or use --data."),
    data: Optional[Path] = typer.Option(None, "--data", help="Train on this folder of clean radiographs, no YAML (split 80/10/10 by patient)."),
    out_dir: Optional[str] = typer.Option(None, "--out", "--output-dir", help="Run folder (weights, card, history, config.json)."),
    init_weights: Optional[str] = typer.Option(None, help="Start from these weights: 'shipped' (the shipped model) or a .safetensors path."),
    minutes: Optional[float] = typer.Option(None, "--minutes", "--max-minutes", help="Wall-clock budget; training stops cleanly after it."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint after an interruption."),
    max_steps: Optional[int] = typer.Option(None, help="Override the config's max_steps."),
    max_epochs: Optional[int] = typer.Option(None, help="Override the config's max_epochs."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or cuda:N (default: the config's accelerator)."),
    devices: Optional[str] = typer.Option(None, help="Number of devices/processes (e.g. 2 for two CPU processes)."),
    strategy: Optional[str] = typer.Option(None, help="Lightning strategy, e.g. ddp."),
    accelerator: Optional[str] = typer.Option(None, help="cpu, gpu or auto."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch (default: all cores)."),
) -> None:
    """Train a network with Lightning (CPU, one GPU or several), from a config or straight from a folder.

    `xraydenoise train --data FOLDER --init-weights shipped --minutes 30 --out runs/mine` fine-tunes
    the shipped model on your own clean radiographs; the config it used is written beside the weights.
    """
    if (config is None) == (data is None):
        fail("give either --config CONFIG.yaml or --data FOLDER")
    if data is not None and out_dir is None:
        fail("--data needs --out: the folder for the run and its weights")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        fail(f"--minutes must be a positive number, got {minutes}")
    try:
        from .training.train import folder_config, run_config
    except ImportError as exc:
        fail(f"training needs the torch extra: pip install 'xraydenoise[torch]' ({exc})")
    try:
        if device is not None:
            from .hardware import resolve_device

            concrete = resolve_device(device)
            accelerator, devices = ("cpu", "1") if concrete == "cpu" else ("gpu", f"[{concrete[5:]}]")
        source: TrainConfig | Path
        if data is not None:
            assert out_dir is not None  # checked above
            source = folder_config(data, out_dir, init_weights=init_weights, minutes=minutes)
            init_weights = out_dir = minutes = None  # already in the config
        else:
            assert config is not None  # --config or --data, checked above
            source = config
        if init_weights == "shipped":
            from .weights import shipped_weights

            init_weights = str(shipped_weights())
        run_config(
            source,
            resume=resume,
            max_steps=max_steps,
            max_epochs=max_epochs,
            max_minutes=minutes,
            devices=_parse_devices(devices),
            strategy=strategy,
            accelerator=accelerator,
            output_dir=out_dir,
            threads=threads,
            init_weights=init_weights,
        )
    except XRayDenoiseError as exc:
        fail(str(exc))


@app.command()
def adapt(
    inputs: List[str] = typer.Argument(..., help="Your noisy radiographs: files, folders (searched recursively), globs or a DICOMDIR."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the adapted weights (.safetensors; the model card goes beside it)."),
    minutes: float = typer.Option(5.0, "--minutes", help="Time budget of the fine-tuning; a rerun of a killed run resumes it."),
    from_weights: Optional[str] = typer.Option(None, "--from", help="Weights to start from (.safetensors); default: the shipped model."),
    device: Optional[str] = typer.Option(None, help="auto (default: the first GPU if any), cpu, cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads for torch (default: all cores)."),
) -> None:
    """Fine-tune the network on your own detector's noisy images, without clean ones (self-supervised).

    The noise of each image is estimated from it (level, signal dependence and correlation),
    and the network learns by Recorrupted-to-Recorrupted (Pang et al. 2021), which holds for
    correlated noise. A fifth of the images is held out: when adaptation did not lower their
    self-supervised score, the starting weights are kept, and the command says so. Use the
    result with `xraydenoise denoise ... --method MODEL.safetensors`.
    """
    if not (math.isfinite(minutes) and minutes > 0):
        fail(f"--minutes must be a number above 0, got {minutes}")
    if Path(out).suffix.lower() in PICKLE_SUFFIXES or (from_weights and Path(from_weights).suffix.lower() in PICKLE_SUFFIXES):
        fail("weights are read and written as .safetensors only (pickles can run code)")
    try:
        from .training.adapt import adapt as run_adapt
    except ImportError as exc:
        fail(f"adapt needs the torch extra: pip install 'xraydenoise[torch]' ({exc})")
    try:
        result = run_adapt(inputs, out=out, minutes=minutes, from_weights=from_weights, device=device or "auto", threads=threads)
    except XRayDenoiseError as exc:
        fail(str(exc))
    console.print(result.message, highlight=False, soft_wrap=True)


@app.command()
def ship(
    run: Path = typer.Argument(..., help="A finished training run folder (it holds model.safetensors)."),
    name: str = typer.Option(..., "--name", help="The name the model ships under (NAME.safetensors, NAME.json)."),
    config: List[str] = typer.Option([], "--config", help="The config(s) that made the run, in order; repeat for each stage."),
    white_expert: Optional[Path] = typer.Option(None, "--white-expert", help="Ship a routed network: RUN is the detector-noise expert, this run the white-noise expert."),
    white_config: List[str] = typer.Option([], "--white-config", help="The config(s) that made the white-noise expert, in order."),
    gate: str = typer.Option("0.05,0.15", "--gate", help="With --white-expert: LOW,HIGH lag-1 autocorrelations: white expert below LOW, detector expert above HIGH, blended between."),
    out: Optional[Path] = typer.Option(None, "--out", help="Destination folder (default: the package's pretrained/ folder)."),
) -> None:
    """Package a training run as a shipped model: float16 weights, the completed model card, one joined learning curve."""
    try:
        from .training.ship import default_destination, ship_run
    except ImportError as exc:
        fail(f"ship needs the torch extra: pip install 'xraydenoise[torch]' ({exc})")
    try:
        try:
            low, high = (float(v) for v in gate.split(","))
        except ValueError:
            raise ConfigError(f"--gate must be two numbers LOW,HIGH, got {gate!r}") from None
        target = ship_run(run, out or default_destination(), name, config=config or None,
                          white_expert=white_expert, white_config=white_config or None, gate=(low, high))
    except XRayDenoiseError as exc:
        fail(str(exc))
    console.print(f"wrote {target}", highlight=False)


def _parse_devices(text: Optional[str]):
    """Lightning's devices: a count ("2"), a list of indices ("[1]"), or a word ("auto")."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    if text.startswith("[") and text.endswith("]") and all(p.strip().isdigit() for p in text[1:-1].split(",")):
        return [int(p) for p in text[1:-1].split(",")]
    return text


@app.command()
def export(
    output: Path = typer.Option(..., "-o", "--out", help="Where to write the exported model."),
    weights: Optional[Path] = typer.Option(None, help="A .safetensors file with its model card (default: the shipped model)."),
    format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),  # noqa: A002 - the option's name
) -> None:
    """Export a network to ONNX with dynamic height and width."""
    if format != "onnx":
        fail(f"--format must be onnx, got {format!r}")
    if output.is_dir():
        fail(f"{output}: is a folder; give the path of the .onnx file to write")
    try:
        from .export import export_onnx

        export_onnx(weights, output)
    except XRayDenoiseError as exc:
        fail(str(exc))
    console.print(f"wrote {output}", highlight=False)


@app.command()
def report(
    out_dir: Path = typer.Option(Path("docs/results"), "--out", "-o", help="Folder for the report, figures and data."),
    quick: bool = typer.Option(False, "--quick", help="Run the whole pipeline on a few small images with the same networks (for tests)."),
) -> None:
    """Regenerate the paper's Tables 1-10 and figures on real radiographs."""
    try:
        from .evaluation.report import build_report

        path = build_report(out_dir, quick=quick)
    except XRayDenoiseError as exc:
        fail(str(exc))
    console.print(f"report written to {path}", highlight=False)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo_output"), "--out", "-o"),
    method: str = typer.Option("network", help="Denoiser to show."),
    sigma: float = typer.Option(25.0, help="Gaussian noise added to the bundled samples, in grey levels."),
) -> None:
    """Denoise the bundled sample radiographs: before/after figure and a metrics table."""
    try:
        from .evaluation.demo import run_demo

        run_demo(out_dir, method=method, sigma=sigma / 255.0, console=out)
    except XRayDenoiseError as exc:
        fail(str(exc))


@app.command(name="methods")
def list_methods_command() -> None:
    """List the available denoisers."""
    from .denoisers import list_methods

    for name in list_methods():
        out.print(name)


from .serve.command import serve as serve_command  # noqa: E402 - imports typer only

app.command(name="serve")(serve_command)


from .viewer.command import view as view_command  # noqa: E402 - imports typer only

app.command(name="view")(view_command)


def main() -> None:
    try:
        app()
    except XRayDenoiseError as exc:  # anything that slipped past a command's own handling
        console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
