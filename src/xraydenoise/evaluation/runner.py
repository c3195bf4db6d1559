"""Score denoisers on real radiographs with synthetic noise, one row per (image, noise, method).

The protocol, used by ``xraydenoise evaluate``, the benchmark and the report:

* each image is read at full precision and, when its long side exceeds ``size``, downscaled
  (anti-aliased) so that the long side is ``size`` pixels (smaller images are never upscaled);
* noise is drawn with a seed derived from (image id, noise label, base seed), so every method
  sees exactly the same noisy image and reruns see the same noise on any machine;
* classical filters are given the true noise level (Poisson-Gaussian through the generalised
  Anscombe transform; for correlated noise BM3D is given the noise power spectrum, the other
  filters the per-pixel std); blind networks are given only the noisy image;
* outputs are clipped to [0, 1] and scored with PSNR and SSIM (scikit-image, data range 1).

Scores are cached (JSON lines keyed by image, size, noise, seed, method and weights hash),
so a report or a rerun never recomputes BM3D.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..data import GROUP_COLUMNS, Record
from ..data.resize import resize_long_side
from ..denoisers import NETWORK_ALIAS_OPTIONS, NETWORK_ALIASES, denoise_with_noise, is_network, split_mode
from ..errors import ConfigError
from ..io import load_image
from ..metrics import psnr, ssim
from ..noise import NOISE_SYNTAX, NoiseModel, parse_noise
from ..settings import cache_dir

#: Bump when the protocol changes so stale cached scores are not reused.
PROTOCOL_VERSION = 1
NOISY = "noisy"  # pseudo-method: the noisy input itself, for reference


def scoring_options(spec: str) -> dict:
    """Network options for scoring: PyTorch fp32, the reference every faster backend is held to.

    The default backend is chosen by timing (:func:`~xraydenoise.denoisers.fastest_backend`),
    which may differ between runs and machines; scores must not. Without torch, ONNX Runtime
    (equal to fp32 to ~1e-7).
    """
    base, _ = split_mode(spec)
    if not is_network(base) or Path(base).suffix.lower() == ".onnx":
        return {}
    import importlib.util

    return {"backend": "torch" if importlib.util.find_spec("torch") is not None else "onnxruntime"}


def parse_levels(text: str) -> list[NoiseModel]:
    """Parse ``evaluate --levels``: comma-separated noise specifications.

    Each item is in the :func:`~xraydenoise.noise.parse_noise` syntax (which has no commas):
    ``10``, ``pg:0.01:5``, ``10@gauss:1``, ``pg:0.01:3@exp:0.7``, ``10@kernel:FILE.npy``...
    Two items with the same label (the same noise) are refused: they would share scores.

    >>> [m.label for m in parse_levels("10,pg:0.01:5, 25@gauss:1")]
    ['gaussian-10', 'poisson-gaussian-a0.01-s5', 'gaussian-25-gauss1']
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"--levels: no noise level given; {NOISE_SYNTAX}")
    models: list[NoiseModel] = []
    seen: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            raise ConfigError(f"--levels {text!r}: an empty item between commas")
        model = parse_noise(item)
        if model.label in seen:
            raise ConfigError(f"--levels {text!r}: {item.strip()!r} is the same noise as {seen[model.label]!r}")
        seen[model.label] = item.strip()
        models.append(model)
    return models


def noise_seed(image_id: str, label: str, base_seed: int) -> int:
    return zlib.crc32(f"{image_id}|{label}|{base_seed}".encode()) & 0x7FFFFFFF


def prepare_image(record: Record, size: int | None) -> np.ndarray:
    """Load ``record`` as float32 in [0,1], downscaled so its long side is at most ``size``."""
    image = load_image(record.path).to_float()
    return resize_long_side(image, size)


@dataclass(frozen=True)
class Method:
    """A method to evaluate: ``spec`` is what get_denoiser takes, ``label`` what tables show."""

    spec: str
    label: str

    @property
    def fingerprint(self) -> str:
        """What a cached score depends on: the method, a network's weights, and the noise
        estimator's version where the method is told the estimate (a changed estimator
        changes those scores, and only those)."""
        from ..export import weights_digest
        from ..noise.estimate import ESTIMATOR_VERSION

        base, mode = split_mode(self.spec)
        if is_network(base):
            from ..weights import shipped_weights

            path = shipped_weights() if base in NETWORK_ALIASES else Path(base)
            digest = weights_digest(path)[:16] if path.exists() else "missing"
            told_estimate = mode != "told" and _told_the_noise(path)
            return f"{self.label}:{digest}" + (f":estimator-{ESTIMATOR_VERSION}" if told_estimate else "")
        return self.label + (f":estimator-{ESTIMATOR_VERSION}" if mode == "estimate" else "")


def _told_the_noise(weights: Path) -> bool:
    """Whether the network at ``weights`` is told the noise (so, in use, the estimate)."""
    from ..errors import WeightsError
    from ..weights import read_card

    if weights.suffix != ".safetensors":
        return True  # an ONNX graph: assume so (its fingerprint then follows the estimator too)
    try:
        card = read_card(weights)
    except WeightsError:
        return True
    return card.architecture == "routed" or bool(card.options.get("noise_map"))


def method_from_spec(spec: str) -> Method:
    """A method and its table label; ``told:`` / ``estimate:`` prefixes (see
    :func:`~xraydenoise.denoisers.split_mode`) add ``-told`` / ``-estimate`` to the label."""
    if spec == NOISY:
        return Method(NOISY, NOISY)
    base, mode = split_mode(spec)
    suffix = f"-{mode}" if mode else ""
    if is_network(base):
        from ..weights import read_card, shipped_weights

        path = shipped_weights() if base in NETWORK_ALIASES else Path(base)
        name = read_card(path).name if path.suffix == ".safetensors" else path.stem
        return Method(spec, name + ("-x8" if NETWORK_ALIAS_OPTIONS.get(base, {}).get("ensemble") else "") + suffix)
    from ..classical import get_classical

    get_classical(base)  # unknown names fail here, before any work
    return Method(spec, base + suffix)


class ScoreCache:
    """Append-only JSON-lines cache of scores; safe to interrupt (a partial last line is ignored).

    Processes that share the file share their scores as they go: a key not yet known is looked
    for again among the lines appended since the last read (say, by an ``evaluate`` running beside
    a report), so no score is computed twice.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        self.hits = 0  # scores served from the cache in this process
        self.misses = 0
        self._read = 0  # bytes of the file read so far (whole lines only)
        self._refresh()

    def _refresh(self) -> None:
        if self.path is None or not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self._read)
            new = handle.read()
        complete = new[: new.rfind(b"\n") + 1]  # a line still being written is read next time
        self._read += len(complete)
        for line in complete.decode("utf-8", "replace").splitlines():
            try:
                row = json.loads(line)
                self.rows[row["key"]] = row
            except (ValueError, KeyError, TypeError):
                continue

    def get(self, key: str) -> dict | None:
        row = self.rows.get(key)
        if row is None:
            self._refresh()
            row = self.rows.get(key)
        if row is None:
            self.misses += 1
        else:
            self.hits += 1
        return row

    def put(self, key: str, row: dict) -> None:
        row = dict(row, key=key)
        self.rows[key] = row
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
                handle.flush()
                os.fsync(handle.fileno())


def default_cache() -> ScoreCache:
    return ScoreCache(cache_dir() / f"scores-v{PROTOCOL_VERSION}.jsonl")


def evaluate(
    records: list[Record],
    methods: Iterable[str | Method],
    noises: Iterable[str | NoiseModel],
    *,
    size: int | None = 512,
    seed: int = 0,
    cache: ScoreCache | None = None,
    progress: bool = True,
    description: str = "evaluating",
) -> list[dict]:
    """Score every method on every image at every noise level; returns one dict per score."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    method_list = [m if isinstance(m, Method) else method_from_spec(m) for m in methods]
    noise_list = [n if not isinstance(n, str) else parse_noise(n) for n in noises]
    # Hashing a network's weights file once per method, not once per (image, noise) key.
    fingerprints = {method: method.fingerprint for method in method_list}
    rows: list[dict] = []
    total = len(records) * len(noise_list) * len(method_list)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for record in records:
            image = None
            for noise in noise_list:
                nseed = noise_seed(record.image_id, noise.label, seed)
                noisy = None
                for method in method_list:
                    key = f"{record.image_id}|{size}|{noise.label}|{nseed}|{fingerprints[method]}"
                    row = cache.get(key) if cache else None
                    if row is None:
                        if image is None:
                            image = prepare_image(record, size)
                        if noisy is None:
                            noisy = noise(image, seed=nseed).astype(np.float32)
                        start = time.perf_counter()
                        if method.spec == NOISY:
                            out = noisy
                        else:
                            out = denoise_with_noise(method.spec, noisy, noise, **scoring_options(method.spec))
                        seconds = time.perf_counter() - start
                        out = np.clip(out, 0.0, 1.0)
                        row = {
                            "psnr": psnr(image, out),
                            "ssim": ssim(image, out),
                            "seconds": seconds,
                            "height": image.shape[0],
                            "width": image.shape[1],
                        }
                        if cache is not None:
                            cache.put(key, row)
                    full: dict[str, Any] = {"image": record.image_id, **{c: record.get(c) for c in GROUP_COLUMNS}}
                    full.update(
                        level=noise.label,
                        method=method.label,
                        size=size or 0,
                        psnr=row["psnr"],
                        ssim=row["ssim"],
                        seconds=row["seconds"],
                        height=row["height"],
                        width=row["width"],
                    )
                    rows.append(full)
                    bar.advance(task)
    return rows


def summarise(rows: list[dict], by: tuple[str, ...] = ("level", "method")) -> list[dict]:
    """Mean, standard deviation and count of PSNR/SSIM per group, groups in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    out = []
    for key, members in groups.items():
        p = np.array([m["psnr"] for m in members], dtype=np.float64)
        s = np.array([m["ssim"] for m in members], dtype=np.float64)
        t = np.array([m["seconds"] for m in members], dtype=np.float64)
        out.append(
            {
                **dict(zip(by, key)),
                "n": len(members),
                "psnr_mean": float(p.mean()),
                "psnr_std": float(p.std(ddof=1)) if len(p) > 1 else 0.0,
                "ssim_mean": float(s.mean()),
                "ssim_std": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
                "seconds_median": float(np.median(t)),
            }
        )
    return out


def write_rows(rows: list[dict], path: Path) -> Path:
    """Write per-image rows as CSV (``.csv``) or JSON lines (anything else), atomically."""
    path = Path(path)
    import csv
    import io

    from ..io._atomic import atomic_write

    buffer = io.StringIO(newline="")
    if path.suffix == ".csv":
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["image"]
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            buffer.write(json.dumps(row) + "\n")
    atomic_write(Path(path), lambda handle: handle.write(buffer.getvalue().encode()))
    return path
