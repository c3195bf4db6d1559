"""Adapt a network to one's own detector from noisy radiographs alone (no clean images).

The objective is Recorrupted-to-Recorrupted (R2R; Pang, Zhang, Zhang & Wang, CVPR 2021), with
the noise model of each image estimated from that image (:func:`~xraydenoise.noise.estimate_noise`):
for a noisy image ``y = x + n`` with ``n ~ N(0, C)``, draw ``z ~ N(0, C)`` and train the network
on the input ``y + alpha z`` against the target ``y - z / alpha``. The two noises
``n + alpha z`` and ``n - z / alpha`` are uncorrelated (``C - C = 0``), hence independent for
Gaussian noise, so the expected loss is the loss against the clean image plus a constant:
training on noisy pairs minimises the error to the unseen clean image. Unlike Noise2Void or
Neighbor2Neighbor, which assume that neighbouring pixels' noise is independent, this holds
for spatially correlated noise, as long as ``z`` has the noise's correlation: ``z`` is unit
white noise shaped by the estimated detector kernel, times the estimated per-pixel std
``sqrt(a x + s^2)`` (signal-dependent noise in its Gaussian approximation), with ``x`` the image
smoothed (:attr:`NoisyImage.signal`): R2R rewards a network for keeping whatever noise the
recorruption lacks, so ``z`` must match the noise where the image is dark too.

A network that is told the noise (:mod:`xraydenoise.noise.condition`) is told, in training,
the level of its recorrupted input (``sqrt(1 + alpha^2)`` times the image's own), and in use
the image's own level: it learned in pretraining what to do at every level, and learns here
the user's anatomy, processing and detector kernel.

Nothing is ever made worse unnoticed: a fifth of the images (at least one) is held out, and
the same R2R loss on them, with fixed draws, scores the network before and after. Its
expectation is the error to the clean images plus a constant that does not depend on the
network, so the difference of the two scores is an unbiased estimate of the change in mean
squared error against the clean images nobody has. When adaptation did not lower it, the
starting weights are kept and the command says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, XRayDenoiseError

if TYPE_CHECKING:  # pragma: no cover
    from ..noise import CorrelatedNoise

log = logging.getLogger(__name__)

#: Recorruption strength: the network learns on ``sqrt(1 + ALPHA^2)`` = 1.12x the image's noise
#: against a target with ``1 + 1 / ALPHA^2`` = 5x its variance. Pang et al. use 0.5.
ALPHA = 0.5
#: Estimated noise below this std (on the [0, 1] scale, at the median intensity) leaves
#: nothing to learn from: the images are as good as clean at 8 bits.
MIN_NOISE_STD = 1.0 / 255
#: Patch side and batch size of the adaptation steps.
PATCH = 96
BATCH = 8
#: Held-out score: fixed recorruptions per image, on a centre crop of at most this side.
SCORE_DRAWS = 4
SCORE_CROP = 512
#: The adapted network is kept only when the held-out score fell by more than this fraction
#: of the recorrupted target's noise energy: smaller changes are within the score's own noise.
MIN_IMPROVEMENT = 1e-4


#: Gaussian width (px) of the smoothing that gives the signal a recorruption's std is taken at.
SIGNAL_SMOOTHING = 2.0


@dataclass
class NoisyImage:
    """One of the user's images on the [0, 1] scale, with the noise estimated from it."""

    name: str
    pixels: np.ndarray
    noise: CorrelatedNoise  # white noise has the one-pixel kernel
    _signal: np.ndarray | None = field(default=None, repr=False)

    @property
    def signal(self) -> np.ndarray:
        """The image smoothed: where the recorruption's std ``sqrt(a x + s^2)`` is evaluated.

        Taken at the noisy pixels, as a denoiser's std map is, the std of ``z`` follows each
        pixel's own noise where the image is dark: 0 (or ``s``) where the noise pushed the pixel
        to 0 or below, larger where it pushed it up. The network sees that in its input ``y +
        alpha z`` and learns to keep the noise there, because the R2R target ``y - z / alpha``
        then carries it; the held-out score, built the same way, rewards it too (on FracAtlas
        films with quantum noise through a 1.4 px kernel, adaptation so made the films worse
        while its score said better). Taken at the smoothed image, ``z`` has the noise's std
        there (tests/unit/test_adapt_recorruption.py); docs/adapt.md measures the result.
        """
        if self._signal is None:
            from scipy import ndimage

            self._signal = ndimage.gaussian_filter(self.pixels, SIGNAL_SMOOTHING, mode="reflect").astype(np.float32)
        return self._signal

    @property
    def std(self) -> float:
        """Estimated noise std at the image's median intensity."""
        return float(np.sqrt(self.noise.a * max(float(np.median(self.pixels)), 0.0) + self.noise.s**2))


@dataclass
class AdaptResult:
    """What :func:`adapt` did: where the weights are, and whether adaptation was kept."""

    weights: Path
    adapted: bool
    images: int
    held_out: int
    steps: int
    seconds: float
    score_before: float
    score_after: float
    psnr_before: float  # self-supervised estimates of PSNR against the unseen clean images
    psnr_after: float
    noise: list[str] = field(default_factory=list)
    message: str = ""


def _as_correlated(model):
    """Any estimated model as a CorrelatedNoise (white noise: the one-pixel kernel)."""
    from ..noise import CorrelatedNoise

    if isinstance(model, CorrelatedNoise):
        return model
    return CorrelatedNoise(model.kernel, a=getattr(model, "a", 0.0), s=getattr(model, "s", getattr(model, "sigma", 0.0)))


def _louder(model, factor: float):
    """The same noise with its std multiplied by ``factor`` (variance by ``factor^2``)."""
    from ..noise import CorrelatedNoise

    return CorrelatedNoise(model.kernel, a=model.a * factor**2, s=model.s * factor)


def read_noisy_images(inputs) -> list[NoisyImage]:
    """The user's images on the [0, 1] scale, each with its estimated noise.

    ``inputs`` are paths as ``denoise`` takes them (files, folders, globs, DICOMDIRs), or
    2-D arrays (float on [0, 1], or uint8 / uint16 on their full range). Multi-frame DICOM
    contributes each frame. Unreadable files are one-line errors.
    """
    from ..batch import expand_inputs
    from ..denoisers import unit_range
    from ..io import load_image
    from ..noise import estimate_noise

    images: list[tuple[str, np.ndarray]] = []
    paths = [str(item) for item in inputs if isinstance(item, (str, Path))]
    arrays = [item for item in inputs if not isinstance(item, (str, Path))]
    if paths:
        found = expand_inputs(paths)
        if found.problems:
            path, reason = found.problems[0]
            raise XRayDenoiseError(f"{path}: {reason}")
        for file, _ in found.files:
            image = load_image(file, all_frames=True)
            if image.frames is None:
                frames = [(str(file), image)]
            else:  # each frame on its own, as denoise reads it
                frames = [(f"{file}[{index}]", dataclasses.replace(image, pixels=frame, frames=None, padding=None))
                          for index, frame in enumerate(image.frames)]
            for name, one in frames:
                values, _, span = unit_range(one)
                if span:  # a constant image has no noise to learn from
                    images.append((name, values))
    for index, array in enumerate(arrays):
        from .. import _array_image

        values, _, span = unit_range(_array_image(array, None))
        if span:
            images.append((f"array {index}", values))
    out = []
    for name, values in images:
        if min(values.shape) < 2 * PATCH:
            raise XRayDenoiseError(f"{name}: image is {values.shape[1]}x{values.shape[0]}, smaller than the {2 * PATCH} px adaptation needs")
        out.append(NoisyImage(name, values.astype(np.float32), _as_correlated(estimate_noise(values).model)))
    return out


def _recorrupt(y: np.ndarray, z: np.ndarray, noise) -> tuple[np.ndarray, np.ndarray, object]:
    """``(input, target, told)``: R2R's pair for ``y`` and the recorruption ``z``, and the noise model of the input."""
    pair_input = (y + ALPHA * z).astype(np.float32)
    target = (y - z / ALPHA).astype(np.float32)
    return pair_input, target, _louder(noise, math.sqrt(1 + ALPHA**2))


def _crop(pixels: np.ndarray, side: int) -> np.ndarray:
    top = max(0, (pixels.shape[0] - side) // 2)
    left = max(0, (pixels.shape[1] - side) // 2)
    return pixels[top : top + side, left : left + side]


def held_out_score(network, images: list[NoisyImage]) -> tuple[float, float]:
    """``(score, estimated PSNR)`` of ``network`` on held-out noisy images, with fixed draws.

    The score is the mean R2R loss ``|f(y + alpha z) - (y - z / alpha)|^2``; subtracting the
    target's expected noise energy (the estimated noise variance plus ``|z|^2 / alpha^2``)
    leaves an estimate of the mean squared error to the clean image, shown as a PSNR.
    """
    from ..noise import noise_condition

    losses, errors = [], []
    for index, image in enumerate(images):
        y = _crop(image.pixels, SCORE_CROP)
        signal = _crop(image.signal, SCORE_CROP)
        for draw in range(SCORE_DRAWS):
            z = image.noise.sample(signal, seed=7919 * index + draw).astype(np.float64) - signal
            pair_input, target, told = _recorrupt(y, z, image.noise)
            condition = None
            if network.noise_channels:
                condition = noise_condition(pair_input, told, correlation=network.noise_channels > 1)
            out = network._run(pair_input, condition)
            loss = float(np.mean((out.astype(np.float64) - target) ** 2))
            z_energy = float(np.mean(((y.astype(np.float64) - target) * ALPHA) ** 2)) / ALPHA**2
            noise_energy = float(np.mean(image.noise.std_map(signal).astype(np.float64) ** 2))
            losses.append(loss)
            errors.append(loss - noise_energy - z_energy)
    score = float(np.mean(losses))
    mse = max(float(np.mean(errors)), 1e-10)
    return score, 10 * math.log10(1.0 / mse)


def _fingerprint(images: list[NoisyImage], start: Path, minutes: float) -> str:
    digest = hashlib.sha256()
    digest.update(start.read_bytes())
    for image in images:
        digest.update(image.name.encode())
        digest.update(np.ascontiguousarray(image.pixels[:: max(1, image.pixels.shape[0] // 64)]).tobytes())
    digest.update(f"{minutes}|{ALPHA}|{PATCH}|{BATCH}".encode())
    return digest.hexdigest()[:16]


def adapt(
    inputs,
    *,
    out: str | Path | None = None,
    minutes: float = 5.0,
    from_weights: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
    seed: int = 0,
) -> AdaptResult:
    """Fine-tune a network on the user's noisy radiographs alone, self-supervised (R2R).

    Parameters
    ----------
    inputs
        Files, folders, globs or DICOMDIRs (as ``denoise`` reads them), or 2-D arrays.
    out
        Where to write the weights (``.safetensors``, with the model card beside it); default
        ``adapted.safetensors`` in the user's cache folder.
    minutes
        Time budget of the fine-tuning (the held-out scoring comes on top). A run killed part
        way and started again with the same inputs resumes where it stopped.
    from_weights
        Weights to start from (default: the shipped model).
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Returns
    -------
    AdaptResult
        ``adapted`` is False when adaptation did not lower the held-out score: the weights
        written are then the starting weights, with the attempt recorded in their card.

    Examples
    --------
    >>> import xraydenoise
    >>> result = xraydenoise.adapt(["my_detector/"], minutes=5)   # doctest: +SKIP
    >>> result.adapted, result.psnr_after - result.psnr_before    # doctest: +SKIP
    """
    import torch

    from ..denoisers import NetworkDenoiser
    from ..hardware import resolve_device
    from ..inference import TorchBackend
    from ..settings import cache_dir
    from ..weights import load_model, read_card, save_weights, shipped_weights

    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes) or minutes <= 0:
        raise ConfigError(f"the time budget must be a number of minutes above 0, got {minutes!r}")
    start = Path(from_weights) if from_weights is not None else shipped_weights()
    if start.suffix.lower() != ".safetensors":
        raise ConfigError(f"{start}: adapt starts from .safetensors weights (with their .json card)")
    out = Path(out) if out is not None else cache_dir() / "adapted" / "adapted.safetensors"
    if out.suffix.lower() != ".safetensors":
        raise ConfigError(f"{out}: the adapted weights are written as .safetensors")
    if out.exists() and out.is_dir():
        raise ConfigError(f"{out}: is a folder; give the weights file to write")
    if out.resolve() == start.resolve():
        raise ConfigError(f"{out}: is the weights adaptation starts from; write the result elsewhere")
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)

    images = read_noisy_images(list(inputs) if not isinstance(inputs, (str, Path, np.ndarray)) else [inputs])
    if not images:
        raise XRayDenoiseError("no images found to adapt on")
    if len(images) < 2:
        raise XRayDenoiseError("adaptation needs at least 2 images: one to learn from and one held out to check the result")
    loudest = max(image.std for image in images)
    if loudest < MIN_NOISE_STD:
        raise XRayDenoiseError(f"the noise is too low to learn from (estimated std {loudest * 255:.2f}/255 at most); the model is left unchanged")
    held = images[::5][: max(1, len(images) // 5)]
    held_names = {image.name for image in held}
    learn = [image for image in images if image.name not in held_names]

    card = read_card(start)
    model = load_model(start)
    network = NetworkDenoiser(start, backend="torch", device=device)
    score_before, psnr_before = held_out_score(network, held)

    state_dir = out.with_name(f".{out.name}.adapt")
    fingerprint = _fingerprint(images, start, minutes)
    steps, seconds = _fine_tune(model, learn, minutes=minutes, device=device, state_dir=state_dir / fingerprint,
                                seed=seed, progress=progress)
    assert isinstance(network.backend, TorchBackend)  # backend="torch"
    network.backend.model = model.to(device).eval()  # score the adapted weights through the same path
    score_after, psnr_after = held_out_score(network, held)
    target_energy = float(np.mean([float(np.mean(i.noise.std_map(_crop(i.signal, SCORE_CROP)) ** 2)) for i in held])) * (1 + 1 / ALPHA**2)
    adapted = score_before - score_after > MIN_IMPROVEMENT * target_energy

    noise_summary = sorted({str(image.noise) for image in images})
    record = {
        "adapted": adapted,
        "method": "Recorrupted-to-Recorrupted (Pang et al. 2021), noise estimated per image",
        "alpha": ALPHA,
        "images": len(learn),
        "held_out": len(held),
        "estimated_noise": noise_summary[:20],
        "from": {"name": card.name, "sha256": hashlib.sha256(start.read_bytes()).hexdigest()},
        "steps": steps,
        "seconds": round(seconds, 1),
        "held_out_score": {"before": score_before, "after": score_after},
        "held_out_psnr_estimate": {"before": round(psnr_before, 3), "after": round(psnr_after, 3)},
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    new_card = card.replace(name=out.stem, adaptation=record)
    if not adapted:
        model = load_model(start)  # keep the starting weights: adaptation did not help
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, out, new_card, half=card.weights_dtype == "float16" and adapted is False)
    _remove_state(state_dir)
    if adapted:
        message = (f"adapted on {len(learn)} image(s) in {seconds / 60:.1f} min ({steps} steps): held-out estimate "
                   f"{psnr_before:.2f} -> {psnr_after:.2f} dB; weights in {out}")
    else:
        message = (f"adaptation did not help on the {len(held)} held-out image(s) ({psnr_before:.2f} -> {psnr_after:.2f} dB "
                   f"estimated): kept the starting weights, written to {out}")
    return AdaptResult(out, adapted, len(learn), len(held), steps, seconds, score_before, score_after,
                       psnr_before, psnr_after, noise_summary, message)


def _remove_state(state_dir: Path) -> None:
    import shutil

    shutil.rmtree(state_dir, ignore_errors=True)


def _fine_tune(model, images: list[NoisyImage], *, minutes: float, device: str, state_dir: Path, seed: int,
               progress: bool) -> tuple[int, float]:
    """R2R steps until the time budget is spent; resumable from ``state_dir``. Returns (steps, seconds)."""
    import torch

    from ..hardware import cpu_has_bf16
    from ..noise import noise_condition_torch

    state_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = state_dir / "state.pt"
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    step, spent = 0, 0.0
    if checkpoint.exists():
        try:  # our own file, written by this function: tensors only
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            step, spent = int(saved["step"]), float(saved["seconds"])
            log.info("resuming adaptation at step %d (%.0f s spent)", step, spent)
        except Exception:  # noqa: BLE001 - a torn checkpoint: start over
            step, spent = 0, 0.0
    model.to(device).train()
    channels = getattr(model, "noise_channels", 0)
    bf16 = device != "cpu" or cpu_has_bf16()
    budget = minutes * 60.0
    weights = np.array([im.pixels.size for im in images], dtype=np.float64)
    weights /= weights.sum()
    started = time.monotonic() - spent
    last_save = time.monotonic()
    bar = _Bar(budget, enabled=progress)
    loss_avg = None
    with bar:
        while time.monotonic() - started < budget:
            rng = np.random.default_rng([seed, step])
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            inputs, targets, conditions, scales = [], [], [], []
            for _ in range(BATCH):
                image = images[int(rng.choice(len(images), p=weights))]
                top = int(rng.integers(image.pixels.shape[0] - PATCH + 1))
                left = int(rng.integers(image.pixels.shape[1] - PATCH + 1))
                window = (slice(top, top + PATCH), slice(left, left + PATCH))
                y = torch.from_numpy(np.ascontiguousarray(image.pixels[window]))[None, None]
                signal = torch.from_numpy(np.ascontiguousarray(image.signal[window]))[None, None]
                # the recorruption z: unit noise through the image's kernel times its std at the
                # signal (torch's conv2d: the same draw as the numpy sampler, several times faster)
                z = image.noise.sample_torch(signal, generator) - signal
                inputs.append(y + ALPHA * z)
                targets.append(y - z / ALPHA)
                if channels:
                    told = _louder(image.noise, math.sqrt(1 + ALPHA**2))
                    conditions.append(noise_condition_torch(inputs[-1], told, correlation=channels > 1))
                # each patch's squared error relative to its noise energy: loud and quiet
                # images count alike, as in the supervised training
                scales.append(float(image.noise.std_map_torch(signal).square().mean()) + (1 / 255) ** 2)
            x = torch.cat(inputs).to(device)
            t = torch.cat(targets).to(device)
            c = torch.cat(conditions).to(device) if channels else None
            w = torch.tensor(scales, dtype=torch.float32, device=device)[:, None, None, None]
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
                pred = model(x) if c is None else model(x, c)
            loss = (((pred.float() - t) ** 2) / w).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
            optimizer.step()
            step += 1
            value = float(loss.detach())
            loss_avg = value if loss_avg is None else 0.98 * loss_avg + 0.02 * value
            bar.update(time.monotonic() - started, step, loss_avg)
            if time.monotonic() - last_save > 20:
                _save_state(checkpoint, model, optimizer, step, time.monotonic() - started)
                last_save = time.monotonic()
    model.eval()
    return step, time.monotonic() - started


def _save_state(path: Path, model, optimizer, step: int, seconds: float) -> None:
    import io

    import torch

    from ..io._atomic import atomic_write

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "seconds": seconds}, buffer)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


class _Bar:
    """A rich progress bar over the time budget, with steps and the running loss."""

    def __init__(self, budget: float, *, enabled: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("adapting"), BarColumn(), TextColumn("{task.fields[info]}"),
                                 TimeRemainingColumn(), disable=not enabled, transient=False)
        self.task = self.progress.add_task("adapt", total=budget, info="")
        self.budget = budget

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, elapsed: float, step: int, loss: float) -> None:
        self.progress.update(self.task, completed=min(elapsed, self.budget), info=f"step {step}, loss {loss:.4f}")
