"""``xraydenoise report``: the paper's Tables 1-10, the detector-noise tables and the figures, on real radiographs.

Every number in the report comes from one command, run on the committed code, configs and
weights. The data flows one way:

* this module decides what is computed (:class:`Plan`: images, sizes, noise levels; the
  networks and methods), runs it (:func:`~xraydenoise.evaluation.runner.evaluate`, timing,
  the imaging-physics measurements, the figures), writes the files, and renders one
  :class:`ReportData` with :func:`render`;
* :mod:`~xraydenoise.evaluation.statistics` computes summaries and paired tests from rows;
* :mod:`~xraydenoise.evaluation.tables` formats them as Markdown tables.

Evaluation never trains: the networks are read from ``trained/`` (committed) and the shipped
model from the package; a missing one is a one-line :class:`~xraydenoise.errors.ConfigError`
naming the commands that make it. ``--quick`` runs the same networks on fewer, smaller images.
Scores are cached by image, noise, seed, method and weights hash, so a rerun is cheap.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..data import get_split
from ..errors import ConfigError
from ..io._atomic import atomic_write_text
from ..models import FAMILY
from ..noise import GaussianNoise, parse_noise
from ..settings import PACKAGE_DIR, PROJECT_ROOT, data_dir
from ..weights import read_card, shipped_weights
from . import statistics as stats
from . import tables
from .runner import (
    NOISY,
    Method,
    ScoreCache,
    default_cache,
    evaluate,
    method_from_spec,
    noise_seed,
    prepare_image,
    scoring_options,
    summarise,
    write_rows,
)

CLASSICAL = ("gaussian", "median", "wavelet", "tv", "nlm", "bm3d")
#: Table 4's networks: the same recipe and step budget, blind ...
COMPARISON_BLIND = ("compare-unet", "compare-dncnn", "compare-rdn")
#: ... and the U-Net also given the noise-level map.
COMPARISON_NOISEMAP = ("compare-unet-noisemap",)
COMPARISON = COMPARISON_BLIND + COMPARISON_NOISEMAP
LOIO = {"nih": "loio-nih", "kermany": "loio-kermany", "fracatlas": "loio-fracatlas"}
#: Table 10's reference: the leave-one-institution-out recipe trained on all institutions.
LOIO_REFERENCE = "compare-unet"
#: The previous shipped model, trained on white noise only (in trained/ once a detector-noise model ships).
PREVIOUS_WHITE = "rdn-xray-blind"
#: The detector-noise designs, each one RDN fine-tuned from rdn-xray-blind for the same budget on the
#: same noise mix, differing only in what it is told (configs/compare-detector-*.yaml), by what that is.
DESIGNS = {"compare-detector-blind": "one network, blind", "compare-detector-told": "one network, told its estimate"}
TRAINED_DIR = PROJECT_ROOT / "trained"
CONFIG_DIR = PACKAGE_DIR / "configs"  # shipped inside the package, linked as configs/ in a checkout
DEFAULT_OUT = PROJECT_ROOT / "docs" / "results"
README_PATH = PROJECT_ROOT / "README.md"
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
ADAPT_COMMAND = "python benchmarks/adapt_loio.py"
#: Frequencies (cycles/pixel) at which data/physics.json samples the MTF and NPS curves ...
PHYSICS_FREQUENCIES = (0.1, 0.25, 0.4)
#: ... and those the report's physics table shows.
PHYSICS_MTF_SHOWN = (0.25, 0.4)
PHYSICS_NPS_SHOWN = (0.1, 0.4)


@dataclass(frozen=True)
class Plan:
    """What the report computes; ``quick`` shrinks the images and sizes (the networks are the same)."""

    quick: bool = False
    split: str = "test"
    size: int = 512
    levels: tuple[str, ...] = ("10", "25", "50", "pg:0.01:5")
    default_level: str = "25"
    #: Correlated and signal-dependent noise: Table 3 and the detector-noise table.
    detector_levels: tuple[str, ...] = ("10@gauss:1", "25@gauss:1", "pg:0.01:3@exp:0.7")
    #: No noise added (Table 3's do-no-harm column); None: left out.
    clean_level: str | None = "0"
    resolutions: tuple[int, ...] = (256, 512, 1024)
    resolution_images: int = 12
    resolution_methods: tuple[str, ...] = ("gaussian", "nlm", "bm3d")
    curve_sigmas: tuple[float, ...] = (5, 10, 15, 25, 35, 50)
    curve_images: int = 10
    images: int = 0  # 0: the whole split
    timing_size: int = 1024
    physics_noises: tuple[str, ...] = ("10@gauss:1", "pg:0.01:3@exp:0.7")
    physics_size: int = 256
    physics_realizations: int = 8
    seed: int = 0

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if not quick:
            return cls()
        return cls(quick=True, size=96, images=3, resolutions=(64, 96), resolution_images=2, curve_sigmas=(10, 25), curve_images=2,
                   timing_size=128, physics_size=96, physics_realizations=2)

    @property
    def level_labels(self) -> list[str]:
        return [parse_noise(lv).label for lv in self.levels]

    @property
    def detector_labels(self) -> list[str]:
        return [parse_noise(lv).label for lv in self.detector_levels]

    @property
    def clean_label(self) -> str | None:
        return parse_noise(self.clean_level).label if self.clean_level is not None else None

    @property
    def table3_labels(self) -> list[str]:
        """Table 3's columns: the white-noise levels, the detector-noise levels, no noise."""
        return self.level_labels + self.detector_labels + ([self.clean_label] if self.clean_label else [])

    @property
    def default_label(self) -> str:
        return parse_noise(self.default_level).label


# --------------------------------------------------------------------------- networks


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it."""
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return str(path)


def _stage_number(path: Path) -> int:
    match = re.search(r"-stage(\d+)$", path.stem)
    return int(match.group(1)) if match else 0


def _run_dir(config: Path, name: str) -> str:
    try:
        import yaml

        return str(yaml.safe_load(config.read_text()).get("output_dir") or f"runs/{name}")
    except Exception:  # noqa: BLE001 - only for a message: the usual run folder
        return f"runs/{name}"


def make_command(name: str, out_dir: Path) -> str:
    """The commands that make network ``name`` in ``out_dir``: train each stage of its config, then ship."""
    stages = sorted(CONFIG_DIR.glob(f"{name}-stage*.yaml"), key=_stage_number)
    configs = [f"configs/{p.name}" for p in stages] + [f"configs/{name}.yaml"]
    trains = " && ".join(f"xraydenoise train --config {c}" for c in configs)
    ship_configs = " ".join(f"--config {c}" for c in configs)
    return f"{trains} && xraydenoise ship {_run_dir(CONFIG_DIR / f'{name}.yaml', name)} --name {name} {ship_configs} --out {_shown(out_dir)}"


def missing_network_error(missing: Sequence[Path]) -> ConfigError:
    """One line: the first missing weights file and how to make it, the others by name."""
    first = missing[0]
    message = f"{_shown(first)} not found: make it with '{make_command(first.stem, first.parent)}'"
    if len(missing) > 1:
        message += f" (also missing: {', '.join(_shown(p) for p in missing[1:])})"
    return ConfigError(message)


@dataclass(frozen=True)
class Networks:
    """The networks the report evaluates, as methods (``spec`` a weights path, ``label`` its name)."""

    shipped: Method
    shipped_path: Path
    comparison: dict[str, Method]
    comparison_paths: dict[str, Path]
    loio: dict[str, Method]  # by held-out institution
    loio_paths: dict[str, Path]
    previous: Method | None  # the previous, white-noise-only model, when trained/ has it
    designs: dict[str, Method] = field(default_factory=dict)  # DESIGNS that trained/ has, by name
    design_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def told(self) -> Method:
        """The shipped network told the true noise."""
        return Method(f"told:{self.shipped.spec}", f"{self.shipped.label}-told")


def find_networks(trained_dir: Path = TRAINED_DIR) -> Networks:
    """The committed networks; any that is missing is a ConfigError (evaluation never trains)."""
    shipped = shipped_weights()
    comparison = {name: trained_dir / f"{name}.safetensors" for name in COMPARISON}
    loio = {inst: trained_dir / f"{name}.safetensors" for inst, name in LOIO.items()}
    missing = [p for p in [shipped, *comparison.values(), *loio.values()] if not p.is_file()]
    if missing:
        raise missing_network_error(missing)
    shipped_m = Method(str(shipped), read_card(shipped).name)
    previous_path = trained_dir / f"{PREVIOUS_WHITE}.safetensors"
    previous = None
    if previous_path.is_file():
        label = read_card(previous_path).name
        previous = Method(str(previous_path), label if label != shipped_m.label else f"{label}-previous")
    design_paths = {name: trained_dir / f"{name}.safetensors" for name in DESIGNS if (trained_dir / f"{name}.safetensors").is_file()}
    return Networks(
        designs={name: Method(str(p), name) for name, p in design_paths.items()},
        design_paths=design_paths,
        shipped=shipped_m,
        shipped_path=shipped,
        comparison={name: Method(str(p), name) for name, p in comparison.items()},
        comparison_paths=comparison,
        loio={inst: Method(str(p), LOIO[inst]) for inst, p in loio.items()},
        loio_paths=loio,
        previous=previous,
    )


def history_of(weights: Path) -> list[dict]:
    import csv

    path = weights.with_name(weights.stem + ".history.csv")
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- timing


def time_methods(methods: list[Method], size: int, seed: int) -> dict[str, float]:
    """Median seconds per image at size x size (a crop of a real chest radiograph)."""
    from ..denoisers import denoise_with_noise
    from ..io import load_image
    from .demo import SAMPLES_DIR

    image = load_image(SAMPLES_DIR / "nih_00001629_002.png").to_float()
    image = image[:size, :size] if min(image.shape) >= size else np.resize(image, (size, size))
    noise = GaussianNoise(25 / 255)
    noisy = noise(image, seed=seed).astype(np.float32)
    out = {}
    for method in methods:
        reps = 1 if method.spec in ("bm3d", "nlm", "tv") else 3
        times = []
        options = scoring_options(method.spec)  # PyTorch fp32, as the table says: not the fastest backend
        denoise_with_noise(method.spec, noisy[:64, :64], noise, **options)  # warm-up: load weights, JIT, caches
        for _ in range(reps):
            start = time.perf_counter()
            denoise_with_noise(method.spec, noisy, noise, **options)
            times.append(time.perf_counter() - start)
        out[method.label] = statistics.median(times)
    return out


# --------------------------------------------------------------------------- imaging physics


def measure_physics(methods: Sequence[Method], noises: Sequence[str], *, size: int, realizations: int, seed: int) -> dict[str, dict[str, dict]]:
    """``curves[noise label][method label]``: :func:`~xraydenoise.evaluation.physics.mtf_and_nps`
    of each method, told what the evaluation tells it (:func:`~xraydenoise.denoisers.denoise_with_noise`)."""
    from ..denoisers import denoise_with_noise
    from .physics import mtf_and_nps

    curves: dict[str, dict[str, dict]] = {}
    for spec in noises:
        noise = parse_noise(spec)
        curves[noise.label] = {
            m.label: mtf_and_nps(lambda noisy, nz, method=m.spec: denoise_with_noise(method, noisy, nz, **scoring_options(method)), noise,
                                 size=size, realizations=realizations, seed=seed)
            for m in methods
        }
    return curves


def _at(curve: tuple[np.ndarray, np.ndarray], frequencies: Sequence[float]) -> dict[str, float]:
    freq, values = curve
    return {f"{f:g}": float(np.interp(f, freq, values)) for f in frequencies}


def physics_numbers(curves: Mapping[str, Mapping[str, dict]], *, size: int, realizations: int,
                    frequencies: Sequence[float] = PHYSICS_FREQUENCIES) -> dict:
    """What ``data/physics.json`` holds: the curves sampled at ``frequencies`` (cycles/pixel)."""
    out: dict[str, Any] = {"size": size, "realizations": realizations, "frequencies": list(frequencies),
                           "units": {"frequency": "cycles/pixel", "nps": "intensity^2 pixel^2 (intensity on [0, 1])"},
                           "noises": {}}
    for noise, by_method in curves.items():
        first = next(iter(by_method.values()))
        out["noises"][noise] = {
            "input": {"mtf": _at(first["input_mtf"], frequencies), "nps": _at(first["input_nps"], frequencies)},
            "methods": {m: {"mtf": _at(r["mtf"], frequencies), "nps": _at(r["nps"], frequencies)} for m, r in by_method.items()},
        }
    return out


# --------------------------------------------------------------------------- what the report shows


@dataclass(frozen=True)
class MethodNames:
    """The labels of the methods by their role in the tables (never by position)."""

    shipped: str
    shipped_blind: bool  # the shipped network reads only the image even when told the noise
    shipped_told: str
    ensemble: str | None
    comparison_blind: tuple[str, ...]
    comparison_noisemap: tuple[str, ...]
    loio: dict[str, str]  # by held-out institution
    loio_reference: str
    previous: str | None
    previous_path: str
    bm3d_estimate: str
    designs: tuple[str, ...] = ()  # the detector-noise designs trained/ has (DESIGNS)
    noisy: str = NOISY
    classical: tuple[str, ...] = CLASSICAL

    @property
    def comparison(self) -> tuple[str, ...]:
        return self.comparison_blind + self.comparison_noisemap

    @property
    def main(self) -> list[str]:
        """Tables 1 and 3: the noisy input, the filters, the shipped network, the blind comparison networks."""
        return [self.noisy, *self.classical, self.shipped, *self.comparison_blind]


@dataclass(frozen=True)
class ReportData:
    """Everything :func:`render` shows, by name."""

    plan: Plan
    names: MethodNames
    #: every method at ``plan.levels`` (Tables 1-4, 7-9)
    rows: list[dict]
    #: Table 3's methods at the detector-noise levels and with no noise added
    level_rows: list[dict]
    #: the detector-noise table's other methods (BM3D told the estimate, the network told the noise, the previous model)
    detector_rows: list[dict]
    resolution_rows: list[dict]
    loio_rows: list[dict]
    timings: dict[str, float]
    cards: dict[str, dict]  # model cards by label: the shipped network, then Table 4's, then the loio ones
    sources: list[str]
    data_name: str
    machine: str
    minutes: float
    cache_hits: int
    cache_scores: int
    generated: str  # UTC time stamp
    physics: dict | None = None  # data/physics.json
    #: the detector-noise designs (and the one told, told the true noise) at every level
    design_rows: list[dict] = field(default_factory=list)
    adaptation: tables.AdaptationTable | None = None
    adaptation_error: str | None = None


def render(report: ReportData) -> str:
    """The report's Markdown, a pure function of ``report``."""
    sections = [_header, _protocol, _table1, _table2, _table3, _table4, _table5, _table6, _tables7to9, _table10,
                _detector, _designs, _physics, _adaptation, _figures, _data]
    return "\n".join(line for section in sections for line in section(report)) + "\n"


def _cells(rows: list[dict], by: Sequence[str]) -> dict[tuple, stats.Summary]:
    return stats.summaries(rows, by=tuple(by))


def _grouped(rows: list[dict], by: str, methods: Sequence[str], *, groups: Sequence[str] | None = None) -> str:
    cells = {key: cell for key, cell in _cells(rows, (by, "method")).items()}
    return tables.grouped_table(tables.GroupedTable(by=by, methods=list(methods), cells=cells, groups=groups))


def _paired_rows(rows: list[dict], method: str, reference: str, levels: Sequence[str], clean: str | None) -> list[tables.PairedRow]:
    """``method`` against ``reference`` at each level; at ``clean`` (no noise added) against the identity."""
    out = []
    for level in levels:
        if level == clean:
            members = [r for r in rows if r["method"] == method and r["level"] == level]
            out.append(tables.PairedRow(level, identity=stats.summary(members) if members else None))
        else:
            out.append(tables.PairedRow(level, paired=stats.paired(rows, method, reference, level)))
    return out


def _header(r: ReportData) -> list[str]:
    command = "xraydenoise report --out docs/results" + (" --quick" if r.plan.quick else "")
    s = ["# Results: X-ray denoising on real radiographs\n"]
    if r.plan.quick:
        s.append("> **Quick mode**: a few small images, on the same committed networks (nothing is trained). "
                 "This checks the pipeline; the numbers are not the results.\n")
    s.append(f"Generated by `{command}` (or `make report`) on {r.generated}, in {r.minutes:.1f} minutes, on {r.machine}; "
             f"{r.cache_hits} of {r.cache_scores} scores came from the score cache of earlier runs "
             "(keyed by image, noise, seed, method and weights hash), the rest were computed.\n")
    return s


def _protocol(r: ReportData) -> list[str]:
    n_images = len({row["image"] for row in r.rows})
    p = r.plan
    return [
        "## Protocol\n",
        (f"- **Data**: the development set at `{r.data_name}` ({', '.join(r.sources)}; real radiographs, CC0 / CC BY), "
         f"patient-level 80/10/10 split with seed 0 (`src/xraydenoise/data/splits/xray_dev_seed0.csv`); all tables use the **{p.split}** split ({n_images} images)."),
        f"- **Images**: read as 8-bit, scaled to [0, 1], downscaled (anti-aliased) so the long side is at most {p.size} px, never upscaled; Table 6 resizes instead to each listed size.",
        ("- **Noise**: additive white Gaussian with sigma on the 8-bit scale (gaussian-25 = 25/255), not clipped; "
         "Poisson-Gaussian z = a·Poisson(x/a) + N(0, s²) with a = 0.01 and s = 5/255. Each (image, noise) pair has its own seed, so every method denoises the very same noisy image."),
        ("- **Methods**: classical filters are given the **true** noise level (Poisson-Gaussian through the generalised Anscombe transform and its exact unbiased inverse); "
         f"the networks are **blind** (they see only the noisy image), except `compare-unet-noisemap`, which is also given the per-pixel noise std. `{r.names.shipped}` is the shipped model."),
        ("- **Detector noise** (Table 3 and the detector-noise table): white Gaussian noise convolved with a unit-energy detector kernel, "
         "so its std is unchanged and its power moves to low frequencies: `10@gauss:1` is std 10/255 through a Gaussian kernel of 1 px, "
         "`pg:0.01:3@exp:0.7` signal-dependent noise of variance a·x + s² (a = 0.01, s = 3/255) through an exponential kernel of 0.7 px; "
         "`0` adds no noise. Told the true noise, BM3D is given its noise power spectrum (after the generalised Anscombe transform when it depends on the signal) "
         "and the other filters the per-pixel std."),
        "- **Scores**: outputs clipped to [0, 1]; PSNR and SSIM from scikit-image (data range 1, 7x7 window). Cells are mean ± standard deviation over images; n is the number of images.\n",
    ]


def _table1(r: ReportData) -> list[str]:
    default = r.plan.default_label
    at_default = [row for row in r.rows if row["level"] == default]
    return [
        f"## Table 1: all methods at Gaussian sigma {r.plan.default_level}/255\n",
        _grouped(at_default, "level", r.names.main + list(r.names.comparison_noisemap)),
        f"\nPaired comparison of `{r.names.shipped}` against BM3D (given the true sigma) on the same images: mean difference, share of images where the network wins, two-sided Wilcoxon signed-rank p.\n",
        tables.paired_table(_paired_rows(r.rows, r.names.shipped, "bm3d", [default], None)),
    ]


def _by_default(r: ReportData, column: str) -> str:
    at_default = [row for row in r.rows if row["level"] == r.plan.default_label]
    return _grouped(at_default, column, [NOISY, "nlm", "bm3d", r.names.shipped])


def _table2(r: ReportData) -> list[str]:
    return ["\n## Table 2: by anatomical region\n", _by_default(r, "region")]


def _table3(r: ReportData) -> list[str]:
    names, plan = r.names, r.plan
    levels = plan.table3_labels
    rows = r.rows + r.level_rows
    methods = names.main + ([names.ensemble] if names.ensemble else [])
    cells = _cells(rows, ("level", "method"))
    n = max((c.n for (_, method), c in cells.items() if method in methods), default=0)
    notes = []
    if plan.detector_labels:
        notes.append(f"{', '.join(f'`{lv}`' for lv in plan.detector_labels)} are detector noise (correlated, or correlated and signal-dependent; see Protocol)")
    if plan.clean_label:
        notes.append(f"`{plan.clean_label}` adds no noise (the do-no-harm check): its cells score the output against the input itself, "
                     f"and show {tables.NOT_FINITE} where the output is the input on some image (an infinite PSNR: the input row, and the filters, "
                     "which told sigma 0 return the image unchanged)")
    intro = "Cells: PSNR mean ± std / SSIM mean." + (" " + "; ".join(notes) + "." if notes else "")
    s = ["\n## Table 3: by noise level\n", intro + "\n"]
    s.append(tables.level_table(tables.LevelTable(methods=methods, levels=levels, cells=cells, n=n)))
    s.append(f"\nPaired comparison of `{names.shipped}` against BM3D at every level"
             + (f" (at `{plan.clean_label}`, against the identity: the mean PSNR and SSIM of the output against the input, no test)" if plan.clean_label else "")
             + ":\n")
    s.append(tables.paired_table(_paired_rows(rows, names.shipped, "bm3d", levels, plan.clean_label)))
    if names.ensemble:
        s.append(f"\n`{names.ensemble}` is the same network averaged over the 8 rotations and flips of each image "
                 "(`--method network-x8`, opt-in: 8x the time, Table 5). Against BM3D:\n")
        s.append(tables.paired_table(_paired_rows(rows, names.ensemble, "bm3d", levels, plan.clean_label)))
    return s


def _table4(r: ReportData) -> list[str]:
    levels = r.plan.level_labels
    cells = _cells(r.rows, ("level", "method"))
    arch_rows = []
    for label in r.names.comparison:
        card = r.cards.get(label, {})
        arch_rows.append(tables.ArchitectureRow(
            label=label,
            family=FAMILY.get(card.get("architecture", ""), ""),
            parameters=card.get("parameters", 0),
            steps=card.get("training", {}).get("steps", ""),
            cells={level: cells[(level, label)] for level in levels if (level, label) in cells},
        ))
    return [
        "\n## Table 4: by architecture (same data, noise, loss, optimiser and step budget)\n",
        tables.architecture_table(tables.ArchitectureTable(levels=levels, rows=arch_rows)),
        ("\n`compare-unet` and `compare-unet-noisemap` differ only in the noise-level map input: their rows answer whether the map helps. "
         "The shipped model is trained longer on larger patches (Table 5).\n"),
    ]


def _table5(r: ReportData) -> list[str]:
    nan = float("nan")
    rows = []
    for label, card in r.cards.items():
        if label.startswith("loio-") or label in r.names.designs:  # timed: the shipped network and Table 4's
            continue
        tr = card.get("training", {})
        # A model trained in stages (init_weights) reports the total over all of them.
        rows.append(tables.CostRow(
            method=label,
            inference_seconds=r.timings.get(label, nan),
            parameters=card.get("parameters", 0),
            training_steps=tr.get("total_steps", tr.get("steps", "")),
            training_seconds=tr.get("total_seconds", tr.get("seconds", 0)),
            trained_on=tr.get("machine", ""),
        ))
    if r.names.ensemble:
        rows.append(tables.CostRow(method=r.names.ensemble, inference_seconds=r.timings.get(r.names.ensemble, nan), same_as=r.names.shipped))
    for method in r.names.classical:
        rows.append(tables.CostRow(method=method, inference_seconds=r.timings.get(method, nan)))
    return [
        f"\n## Table 5: cost (CPU: {r.machine})\n",
        tables.cost_table(tables.CostTable(timing_size=r.plan.timing_size, rows=rows)),
        "\nInference: PyTorch eager fp32 for the networks, median of 3 runs after a warm-up (BM3D, NLM and TV: one run). No GPU was used. `make bench` measures speed more carefully (ONNX Runtime, bf16, memory).\n",
    ]


def _table6(r: ReportData) -> list[str]:
    plan = r.plan
    return [
        "\n## Table 6: by resolution\n",
        f"The same {len({row['image'] for row in r.resolution_rows})} test images (those at least {max(plan.resolutions)} px on the long side), resized to each size, Gaussian sigma {plan.default_level}/255.\n",
        _grouped(r.resolution_rows, "resolution", list(plan.resolution_methods) + [r.names.shipped], groups=[f"{x} px" for x in plan.resolutions]),
    ]


def _tables7to9(r: ReportData) -> list[str]:
    s = []
    for number, column, title in ((7, "category", "diagnostic category"), (8, "age_group", "age group"), (9, "modality", "modality")):
        s.append(f"\n## Table {number}: by {title}\n")
        s.append(_by_default(r, column))
    return s


def _table10(r: ReportData) -> list[str]:
    methods = sorted({row["method"] for row in r.loio_rows}, key=lambda m: (not m.startswith("loio"), m))
    return [
        "\n## Table 10: by institution, leave-one-institution-out\n",
        ("Each institution's test images are denoised by a U-Net trained **without** that institution's images (`loio-*`), "
         f"next to the same recipe trained on all institutions (`{r.names.loio_reference}`, same step budget), the shipped model, and BM3D.\n"),
        _grouped(r.loio_rows, "held_out", methods, groups=list(r.names.loio)) if r.loio_rows else "(no rows)",
        f"\nGaussian sigma {r.plan.default_level}/255.\n",
    ]


def _detector(r: ReportData) -> list[str]:
    names, levels = r.names, r.plan.detector_labels
    if not levels:
        return []
    columns = [
        tables.DetectorColumn(NOISY, "noisy"),
        tables.DetectorColumn("bm3d", "BM3D (told the true PSD)"),
        tables.DetectorColumn(names.bm3d_estimate, "BM3D (told the estimate)"),
        tables.DetectorColumn("nlm", "NLM (told the true std)"),
        tables.DetectorColumn(names.shipped, f"{names.shipped} (blind)"),
        tables.DetectorColumn(names.shipped_told, f"{names.shipped} (told the true noise)"),
    ]
    if names.previous:
        columns.append(tables.DetectorColumn(names.previous, f"{names.previous} (previous, white noise only)"))
    rows = [row for row in r.level_rows + r.detector_rows if row["level"] in levels]
    cells = _cells(rows, ("level", "method"))
    shown = {c.method for c in columns}
    n = max((c.n for (_, method), c in cells.items() if method in shown), default=0)
    s = [
        "\n## Detector noise\n",
        ("Correlated and signal-dependent noise (see Protocol), on the same test images. BM3D is told the true noise power spectrum, "
         f"or the noise estimated from the noisy image alone (`estimate:bm3d`: level, signal dependence and correlation); NLM the true per-pixel std; "
         f"`{names.shipped}` reads only the image (blind to the user: it estimates the noise itself), and is also shown told the true noise (`told:network`). "
         "Cells: PSNR (dB) mean ± std / SSIM mean ± std.\n"),
        tables.detector_table(tables.DetectorTable(levels=levels, columns=columns, cells=cells, n=n)),
    ]
    notes = []
    if names.shipped_blind:
        notes.append(f"`{names.shipped}` is a blind network: told the noise, it still reads only the image, so its two columns agree.")
    if not names.previous:
        notes.append(f"`{names.previous_path}` (the previous, white-noise-only model) is not there, so its column is left out.")
    if notes:
        s.append("\n" + " ".join(notes))
    s.append(f"\nPaired comparison of `{names.shipped}` (blind) against BM3D told the true PSD:\n")
    s.append(tables.paired_table(_paired_rows(rows, names.shipped, "bm3d", levels, None)))
    return s


def _designs(r: ReportData) -> list[str]:
    names = r.names
    if not names.designs:
        return [f"\n(The detector-noise designs, `trained/{{{','.join(DESIGNS)}}}.safetensors`, are not there: their table is left out.)\n"]
    levels = r.plan.level_labels + r.plan.detector_labels
    cells = _cells(r.design_rows + r.rows + r.level_rows, ("level", "method"))
    rows = []
    told = {f"{name}-told": f"{DESIGNS[name].replace('its estimate', 'the true noise')}" for name in names.designs}
    kinds = {**{name: DESIGNS[name] for name in names.designs}, **told,
             names.shipped: "two networks routed by the noise, told its estimate"}
    for label, kind in kinds.items():
        if not any((level, label) in cells for level in levels):
            continue
        card = r.cards.get(label) or r.cards.get(label.removesuffix("-told"), {})
        rows.append(tables.ArchitectureRow(
            label=label, family=kind, parameters=card.get("parameters", 0),
            steps=card.get("training", {}).get("total_steps", card.get("training", {}).get("steps", "")),
            cells={level: cells[(level, label)] for level in levels if (level, label) in cells},
        ))
    return [
        "\n## Detector noise: what the network is told\n",
        ("The same RDN, fine-tuned from `rdn-xray-blind` for the same steps on the same mix of white, quantum and detector noise "
         "(`configs/compare-detector-{blind,told}.yaml`), either blind or told the noise (a per-pixel std map and the lag-1 and lag-2 "
         "autocorrelation): in use it is told the estimate from the image (`estimate_noise`), and is also shown told the true noise. "
         f"Beside them the shipped `{names.shipped}`: a white-noise and a detector-noise expert, each told its estimate, routed by it. "
         "Test split, the networks blind to the user. Steps: all training from scratch, earlier stages included. Cells: PSNR (dB) / SSIM.\n"),
        tables.architecture_table(tables.ArchitectureTable(levels=levels, rows=rows, kind="what it is told")),
    ]


def physics_rows(physics: Mapping) -> list[tables.PhysicsRow]:
    """The physics table's rows from ``data/physics.json``: per noise, the noisy input, then each method."""
    rows = []
    mtf_f, nps_f = PHYSICS_MTF_SHOWN, PHYSICS_NPS_SHOWN
    for noise, entry in physics["noises"].items():
        source = entry["input"]
        rows.append(tables.PhysicsRow(noise, "noisy input", {f: source["mtf"][f"{f:g}"] for f in mtf_f}, None))
        for method, result in entry["methods"].items():
            ratio = {f: result["nps"][f"{f:g}"] / source["nps"][f"{f:g}"] for f in nps_f}
            rows.append(tables.PhysicsRow(noise, method, {f: result["mtf"][f"{f:g}"] for f in mtf_f}, ratio))
    return rows


def _physics(r: ReportData) -> list[str]:
    if not r.physics:
        return []
    p = r.physics
    return [
        "\n## Imaging physics: resolution and noise texture\n",
        (f"What BM3D (told the true noise) and `{r.names.shipped}` (blind) do to resolution and to the texture of the noise, "
         f"on synthetic phantoms of {p['size']} x {p['size']} px, {p['realizations']} noise draws each. "
         "**MTF**: the modulation transfer function from a slanted edge (IEC 62220-1 style, 4x oversampled edge spread function) of the mean denoised edge; "
         "the noisy input's row is that of the noisy edges themselves (the phantom's own MTF, a Gaussian blur of 0.7 px and the pixel, up to the noise of the measurement): "
         "a denoiser that keeps the edge keeps it. "
         "**NPS out / in**: the noise power spectrum of what the method leaves on a flat field (output − 0.5) over that of the noise it was given: "
         "below 1 it removes noise at that frequency, and a ratio much lower at high than at low frequency means blotchy, low-frequency residual noise. "
         "Frequencies in cycles/pixel (Nyquist 0.5). Where a spectrum is far below its peak (correlated noise near 0.4 cycles/pixel), "
         "the NPS of 64-px regions reads it high (leakage from the low frequencies), so compare methods at the same frequency.\n"),
        tables.physics_table(tables.PhysicsTable(mtf_frequencies=PHYSICS_MTF_SHOWN, nps_frequencies=PHYSICS_NPS_SHOWN, rows=physics_rows(p))),
        "\n![MTF and NPS](figures/physics_mtf_nps.png)\n",
        "`data/physics.json` has the MTF and the NPS at 0.1, 0.25 and 0.4 cycles/pixel for each method and noise, and those of the input.\n",
    ]


def _adaptation(r: ReportData) -> list[str]:
    s = ["\n## Adaptation\n"]
    if r.adaptation_error:
        s.append(f"`data/adapt.json` could not be read ({r.adaptation_error}); `{ADAPT_COMMAND}` writes it.\n")
    elif r.adaptation is None:
        s.append(f"No adaptation results yet: `{ADAPT_COMMAND}` writes them to `data/adapt.json`, and the next report shows them here.\n")
    else:
        a = r.adaptation
        how = [f"`{a.command}`" if a.command else f"`{ADAPT_COMMAND}`"]
        if a.machine:
            how.append(f"on {a.machine}")
        if a.minutes is not None:
            how.append(f"in {a.minutes:.0f} minutes")
        s.append(f"Fine-tuning the shipped network on an institution's own noisy radiographs (`xraydenoise adapt`), from `data/adapt.json`, made by {' '.join(how)}.\n")
        s.append(tables.adaptation_table(a) if a.rows else "(no rows)")
    return s


def _figures(r: ReportData) -> list[str]:
    return [
        "\n## Figures\n",
        "![chest example](figures/examples_chest.png)\n",
        "![extremity example](figures/examples_extremity.png)\n",
        "Noisy, each method and clean, with a zoom on the window of finest detail and |output - clean| maps.\n",
        "![augmentation](figures/augmentation.png)\n",
        "The training augmentation on a real crop: the paper's, one at a time and at random, and (bottom row) the "
        "text, markers and metal painted onto a share of the patches of the shipped white-noise expert's last stage.\n",
        "![learning curves](figures/learning_curves.png)\n",
        "![PSNR vs sigma](figures/psnr_vs_sigma.png)\n",
    ]


def _data(r: ReportData) -> list[str]:
    return [
        "\n## Data\n",
        ("`data/per_image.csv`: one row per image, noise level and method (all tables); `data/summary.jsonl`: per method and level; "
         "`data/timings.json`; `data/headline.json`; `data/physics.json` (MTF and NPS); `data/adapt.json` (when the adapt benchmark has run). "
         "Model cards: `trained/*.json` and `src/xraydenoise/pretrained/*.json`.\n"),
    ]


# --------------------------------------------------------------------------- headline and README


def headline(rows: list[dict], levels: list[str]) -> dict:
    """``data/headline.json``: mean PSNR (2 decimals), SSIM (4) and n per level and method."""
    cells = stats.summaries(rows)
    out = {}
    for level in levels:
        out[level] = {method: {"psnr": round(c.psnr_mean, 2), "ssim": round(c.ssim_mean, 4), "n": c.n}
                      for (lv, method), c in cells.items() if lv == level}
    return out


def readme_block(text: str) -> str | None:
    """The generated block of a README's text (between the markers), or None without markers."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return None
    return text[start + len(README_START) : end].strip("\n")


def with_readme_block(text: str, block: str) -> str:
    """``text`` with its generated block replaced by ``block``."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ConfigError(f"README has no {README_START} ... {README_END} markers")
    return text[: start + len(README_START)] + "\n" + block + "\n" + text[end:]


def update_readme(headline_data: dict, path: Path = README_PATH) -> bool:
    """Rewrite the README's results block from ``headline_data``; False when it has no markers."""
    if not path.is_file():
        return False
    text = path.read_text()
    if readme_block(text) is None:
        return False
    new = with_readme_block(text, tables.readme_results_block(headline_data))
    if new != text:
        atomic_write_text(path, new)
    return True


def read_adaptation(path: Path) -> tuple[tables.AdaptationTable | None, str | None]:
    """``data/adapt.json`` as a table, or None; the second item says why it could not be read."""
    if not path.is_file():
        return None, None
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return tables.AdaptationTable.from_json(raw), None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0]


# --------------------------------------------------------------------------- orchestration


def select_records(plan: Plan) -> list:
    records = get_split(plan.split)
    if plan.images:
        # a few of each source, so every group of every table has rows
        by_source: dict[str, list] = {}
        for r in records:
            by_source.setdefault(r.get("source"), []).append(r)
        records = [r for group in by_source.values() for r in group[: max(1, plan.images // len(by_source) + 1)]]
    return records


def build_report(out_dir: Path, *, quick: bool = False) -> Path:
    from rich.console import Console

    from ..denoisers import denoise_with_noise
    from ..hardware import machine_description
    from . import figures

    console = Console(stderr=True)
    plan = Plan.for_mode(quick)
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    data_out = out_dir / "data"
    cache = ScoreCache(out_dir / "cache.jsonl") if quick else default_cache()  # shared with `xraydenoise evaluate`
    started = time.monotonic()

    # Networks: the committed ones, the same in --quick; a missing one stops here (before any work).
    console.print("[bold]networks[/bold]")
    nets = find_networks()
    for d in (fig_dir, data_out):
        d.mkdir(parents=True, exist_ok=True)
    shipped_m = nets.shipped
    net_methods = list(nets.comparison.values())
    classical = [Method(m, m) for m in CLASSICAL]
    noisy_m = Method(NOISY, NOISY)
    bm3d_estimate = method_from_spec("estimate:bm3d")
    records = select_records(plan)
    common: dict[str, Any] = {"size": plan.size, "seed": plan.seed, "cache": cache}

    # Tables 1, 2, 3, 4, 7, 8, 9: every method at every level on the test split.
    all_methods = [noisy_m] + classical + [shipped_m] + net_methods
    rows = evaluate(records, all_methods, plan.levels, description="Tables 1-4, 7-9", **common)
    # The shipped model's opt-in geometric self-ensemble (8x the time), at the headline levels.
    ensemble_m = method_from_spec("network-x8")
    rows += evaluate(records, [ensemble_m], plan.levels, description="Table 3: self-ensemble", **common)

    # Table 6: resolution, on the test images whose native long side reaches the largest size.
    big = [r for r in records if max(int(r.get("width") or 0), int(r.get("height") or 0)) >= max(plan.resolutions)][: plan.resolution_images]
    res_rows = []
    for size in plan.resolutions:
        res_rows += evaluate(big, [Method(m, m) for m in plan.resolution_methods] + [shipped_m], [plan.default_level], size=size,
                             seed=plan.seed, cache=cache, description=f"Table 6 at {size} px")
    for r in res_rows:
        r["resolution"] = f"{r['size']} px"

    # Table 10: leave one institution out.
    loio_rows = []
    for inst, method in nets.loio.items():
        subset = [r for r in records if r.get("source") == inst]
        loio_rows += [dict(r, held_out=inst) for r in evaluate(subset, [method, nets.comparison[LOIO_REFERENCE], shipped_m, Method("bm3d", "bm3d")],
                                                               [plan.default_level], description=f"Table 10: {inst}", **common)]

    # PSNR against sigma.
    curve_levels = [str(s) for s in plan.curve_sigmas]
    curve_rows = evaluate(records[: plan.curve_images], [noisy_m] + classical + [shipped_m], curve_levels, description="PSNR vs sigma", **common)

    # Table 3's detector-noise and no-noise columns; the detector-noise table's other methods.
    table3_methods = [noisy_m] + classical + [shipped_m] + [nets.comparison[n] for n in COMPARISON_BLIND] + [ensemble_m]
    extra_levels = list(plan.detector_levels) + ([plan.clean_level] if plan.clean_level is not None else [])
    level_rows = evaluate(records, table3_methods, extra_levels, description="Table 3: detector noise, no noise", **common)
    detector_methods = [bm3d_estimate, nets.told] + ([nets.previous] if nets.previous else [])
    detector_rows = evaluate(records, detector_methods, plan.detector_levels, description="Detector noise", **common)
    # What the network is told: the detector-noise designs, the one told also told the true noise.
    design_methods = [*nets.designs.values()] + [method_from_spec(f"told:{m.spec}") for n, m in nets.designs.items() if n.endswith("-told")]
    design_rows = evaluate(records, design_methods, list(plan.levels) + list(plan.detector_levels), description="Detector-noise designs",
                           **common) if design_methods else []

    # Table 5: cost.
    console.print("[bold]timing[/bold]")
    timings = time_methods(classical + [shipped_m, ensemble_m] + net_methods, plan.timing_size, plan.seed)

    # Figures.
    console.print("[bold]figures[/bold]")
    for modality in ("chest", "extremity"):
        record = next((r for r in records if r.get("modality") == modality), None)
        if record is None:
            continue
        clean = prepare_image(record, plan.size)
        noise = parse_noise(plan.default_level)
        noisy = noise(clean, seed=noise_seed(record.image_id, noise.label, plan.seed)).astype(np.float32)
        outputs = {m.label: np.clip(denoise_with_noise(m.spec, noisy, noise, **scoring_options(m.spec)), 0, 1)
                   for m in classical + [shipped_m]}
        figures.example_figure(clean, noisy, outputs, f"{record.image_id} ({record.get('region')}), Gaussian sigma {plan.default_level}/255: PSNR dB / SSIM",
                               fig_dir / f"examples_{modality}.png")
    patch = prepare_image(get_split("train")[0], plan.size)
    crop = min(192, *patch.shape)
    figures.augmentation_figure(patch[:crop, :crop], fig_dir / "augmentation.png")
    histories = {shipped_m.label: history_of(nets.shipped_path), **{n: history_of(p) for n, p in nets.comparison_paths.items()}}
    figures.learning_curves_figure(histories, fig_dir / "learning_curves.png")
    figures.psnr_vs_sigma_figure(summarise(curve_rows), {GaussianNoise(s / 255).label: s for s in plan.curve_sigmas}, fig_dir / "psnr_vs_sigma.png")

    # Imaging physics: MTF and residual NPS of BM3D (told the true noise) and the shipped network (blind).
    console.print("[bold]imaging physics[/bold]")
    curves = measure_physics([Method("bm3d", "bm3d"), shipped_m], plan.physics_noises, size=plan.physics_size,
                             realizations=plan.physics_realizations, seed=plan.seed)
    figures.physics_figure(curves, fig_dir / "physics_mtf_nps.png")
    physics = physics_numbers(curves, size=plan.physics_size, realizations=plan.physics_realizations)

    # Data.
    machine = machine_description()
    write_rows(rows + res_rows + loio_rows + curve_rows + level_rows + detector_rows + design_rows, data_out / "per_image.csv")
    with np.errstate(invalid="ignore"):  # the std of infinite PSNRs (no noise added) is NaN
        summary = ([dict(r, table="main") for r in summarise(rows)] + [dict(r, table="noise levels") for r in summarise(level_rows)]
                   + [dict(r, table="detector noise") for r in summarise(detector_rows)]
                   + [dict(r, table="detector-noise designs") for r in summarise(design_rows)])
    write_rows(summary, data_out / "summary.jsonl")
    cards = {name: read_card(p).to_dict() for name, p in [(shipped_m.label, nets.shipped_path), *nets.comparison_paths.items(),
                                                           *((LOIO[i], p) for i, p in nets.loio_paths.items()),
                                                           *nets.design_paths.items()]}
    atomic_write_text(data_out / "timings.json", json.dumps({"size": plan.timing_size, "machine": machine, "seconds": timings}, indent=2) + "\n")
    atomic_write_text(data_out / "physics.json", json.dumps(physics, indent=2) + "\n")
    adaptation, adaptation_error = read_adaptation(data_out / "adapt.json")

    names = MethodNames(
        shipped=shipped_m.label,
        shipped_blind=bool(cards[shipped_m.label].get("blind")),
        shipped_told=nets.told.label,
        ensemble=ensemble_m.label,
        comparison_blind=COMPARISON_BLIND,
        comparison_noisemap=COMPARISON_NOISEMAP,
        loio=dict(LOIO),
        loio_reference=LOIO_REFERENCE,
        previous=nets.previous.label if nets.previous else None,
        previous_path=_shown(TRAINED_DIR / f"{PREVIOUS_WHITE}.safetensors"),
        bm3d_estimate=bm3d_estimate.label,
        designs=tuple(nets.designs),
    )
    report = ReportData(
        plan=plan, names=names, rows=rows, level_rows=level_rows, detector_rows=detector_rows, resolution_rows=res_rows,
        loio_rows=loio_rows, timings=timings, cards=cards, sources=sorted({r.get("source") for r in records}),
        data_name=data_dir().name, machine=machine, minutes=(time.monotonic() - started) / 60,
        cache_hits=cache.hits, cache_scores=cache.hits + cache.misses,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        physics=physics, design_rows=design_rows, adaptation=adaptation, adaptation_error=adaptation_error,
    )
    path = atomic_write_text(out_dir / "README.md", render(report))
    top = headline(rows + level_rows, plan.level_labels + plan.detector_labels)
    atomic_write_text(data_out / "headline.json", json.dumps(top, indent=2) + "\n")
    if not quick:  # README's numbers come from the report's data, never typed
        if out_dir.resolve() != DEFAULT_OUT.resolve():
            console.print(f"{_shown(README_PATH)} not updated: only a report written to {_shown(DEFAULT_OUT)} updates its results block")
        elif update_readme(top):
            console.print(f"results block of {_shown(README_PATH)} updated from data/headline.json")
        else:
            console.print(f"{_shown(README_PATH)} not updated: it has no {README_START} ... {README_END} block")
    return path
