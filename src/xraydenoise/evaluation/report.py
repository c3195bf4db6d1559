"""``xraydenoise report``: the paper's Tables 1-10 and figures, regenerated on real radiographs.

Every number in the report comes from this module, run by one command, from the committed
code, configs and weights. Networks it needs are read from ``trained/`` (and the shipped
model from the package); any that are missing are trained with the committed configs first.
Scores are cached by image, noise, seed, method and weights hash, so a rerun is cheap.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..data import get_split
from ..errors import ConfigError
from ..models import FAMILY
from ..noise import GaussianNoise, parse_noise
from ..io._atomic import atomic_write_text
from ..settings import PACKAGE_DIR, PROJECT_ROOT, data_dir
from ..weights import read_card, shipped_weights
from .runner import NOISY, Method, ScoreCache, default_cache, evaluate, method_from_spec, noise_seed, prepare_image, summarise, write_rows
from .tables import fmt_mean_std, markdown_table

CLASSICAL = ("gaussian", "median", "wavelet", "tv", "nlm", "bm3d")
COMPARISON = ("compare-unet", "compare-dncnn", "compare-rdn", "compare-unet-noisemap")
LOIO = {"nih": "loio-nih", "kermany": "loio-kermany", "fracatlas": "loio-fracatlas"}
SHIPPED = "rdn-xray-blind"
TRAINED_DIR = PROJECT_ROOT / "trained"
CONFIG_DIR = PACKAGE_DIR / "configs"  # shipped inside the package, linked as configs/ in a checkout


@dataclass
class Plan:
    """What the report computes; ``quick`` shrinks everything for a test."""

    quick: bool = False
    split: str = "test"
    size: int = 512
    levels: tuple[str, ...] = ("10", "25", "50", "pg:0.01:5")
    default_level: str = "25"
    resolutions: tuple[int, ...] = (256, 512, 1024)
    resolution_images: int = 12
    resolution_methods: tuple[str, ...] = ("gaussian", "nlm", "bm3d")
    curve_sigmas: tuple[float, ...] = (5, 10, 15, 25, 35, 50)
    curve_images: int = 10
    images: int = 0  # 0: the whole split
    timing_size: int = 1024
    seed: int = 0
    quick_train: dict = field(default_factory=lambda: {"max_steps": 4, "max_epochs": 2})

    @classmethod
    def for_mode(cls, quick: bool) -> "Plan":
        if not quick:
            return cls()
        return cls(quick=True, size=96, images=3, resolutions=(64, 96), resolution_images=2, curve_sigmas=(10, 25), curve_images=2, timing_size=128)


# --------------------------------------------------------------------------- models


def _config(name: str):
    from ..training.config import TrainConfig

    path = CONFIG_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: training config not found (the report needs a source checkout)")
    return TrainConfig.from_yaml(path)


def ensure_model(name: str, models_dir: Path, runs_dir: Path, quick: bool) -> Path:
    """Weights of network ``name``: reused when present, else trained with configs/NAME.yaml."""
    weights = models_dir / f"{name}.safetensors"
    if weights.exists():
        return weights
    from dataclasses import replace

    from ..training.train import train

    cfg = _config(name)
    if quick:
        cfg = replace(cfg, max_steps=4, max_epochs=2, max_minutes=None, threads=1,
                      data=replace(cfg.data, steps_per_epoch=2, batch_size=4, patch_size=32, train_images=8, val_images=2, val_crop=64))
    cfg = replace(cfg, output_dir=str(runs_dir / name))
    train(cfg)
    from ..training.ship import ship_run

    ship_run(cfg.output_dir, models_dir, name, config=f"configs/{name}.yaml")
    return weights


def shipped_or_trained(out_models: Path, runs_dir: Path, quick: bool) -> Path:
    if shipped_weights().exists():
        return shipped_weights()
    return ensure_model(SHIPPED, out_models, runs_dir, quick)


def history_of(weights: Path) -> list[dict]:
    import csv

    path = weights.with_name(weights.stem + ".history.csv")
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


# --------------------------------------------------------------------------- statistics


def paired(rows: list[dict], method_a: str, method_b: str, level: str) -> dict | None:
    """Per-image PSNR/SSIM differences A - B on the same noisy images: win rate and Wilcoxon p."""
    from scipy.stats import wilcoxon

    a = {r["image"]: r for r in rows if r["method"] == method_a and r["level"] == level}
    b = {r["image"]: r for r in rows if r["method"] == method_b and r["level"] == level}
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    dp = np.array([a[i]["psnr"] - b[i]["psnr"] for i in common])
    ds = np.array([a[i]["ssim"] - b[i]["ssim"] for i in common])

    def p_value(d: np.ndarray) -> float:
        if np.allclose(d, 0):
            return 1.0
        return float(wilcoxon(d).pvalue)

    return {
        "n": len(common),
        "psnr_diff": float(dp.mean()),
        "psnr_win": float((dp > 0).mean()),
        "psnr_p": p_value(dp),
        "ssim_diff": float(ds.mean()),
        "ssim_win": float((ds > 0).mean()),
        "ssim_p": p_value(ds),
    }


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


# --------------------------------------------------------------------------- tables


def grouped_table(rows: list[dict], by: str, methods: list[str], *, order: list[str] | None = None) -> str:
    summary = summarise(rows, by=(by, "method"))
    groups = order or sorted(dict.fromkeys(r[by] for r in summary))
    lines = []
    for group in groups:
        for method in methods:
            row = next((r for r in summary if r[by] == group and r["method"] == method), None)
            if row:
                lines.append([group or "(blank)", method, row["n"], fmt_mean_std(row["psnr_mean"], row["psnr_std"], 2), fmt_mean_std(row["ssim_mean"], row["ssim_std"], 4)])
    return markdown_table([by, "method", "n", "PSNR (dB)", "SSIM"], lines, align=["l", "l", "r", "r", "r"])


def level_table(rows: list[dict], methods: list[str], levels: list[str]) -> str:
    summary = summarise(rows)
    lines = []
    for method in methods:
        cells = [method]
        for level in levels:
            row = next((r for r in summary if r["level"] == level and r["method"] == method), None)
            cells.append(f"{row['psnr_mean']:.2f} ± {row['psnr_std']:.2f} / {row['ssim_mean']:.4f}" if row else "")
        lines.append(cells)
    n = max((r["n"] for r in summary if r["method"] in methods), default=0)
    return markdown_table(["method"] + [f"{lv} (n={n})" for lv in levels], lines, align=["l"] + ["r"] * len(levels))


def paired_table(rows: list[dict], net: str, ref: str, levels: list[str]) -> str:
    lines = []
    for level in levels:
        p = paired(rows, net, ref, level)
        if p:
            lines.append([level, p["n"], f"{p['psnr_diff']:+.3f}", f"{100 * p['psnr_win']:.0f}%", _p(p["psnr_p"]), f"{p['ssim_diff']:+.4f}", f"{100 * p['ssim_win']:.0f}%", _p(p["ssim_p"])])
    # Three decimals: targets such as "0.5 dB above BM3D" must not be met by rounding.
    return markdown_table(["noise", "n", "ΔPSNR (dB)", "PSNR win rate", "Wilcoxon p", "ΔSSIM", "SSIM win rate", "Wilcoxon p"], lines)


# --------------------------------------------------------------------------- timing


def time_methods(methods: list[Method], size: int, seed: int) -> dict[str, float]:
    """Median seconds per image at size x size (a crop of a real chest radiograph)."""
    from ..denoisers import denoise_with_noise
    from .demo import SAMPLES_DIR

    from ..io import load_image

    image = load_image(SAMPLES_DIR / "nih_00001629_002.png").to_float()
    image = image[:size, :size] if min(image.shape) >= size else np.resize(image, (size, size))
    noise = GaussianNoise(25 / 255)
    noisy = noise(image, seed=seed).astype(np.float32)
    out = {}
    for method in methods:
        reps = 1 if method.spec in ("bm3d", "nlm", "tv") else 3
        times = []
        denoise_with_noise(method.spec, noisy[:64, :64], noise)  # warm-up: load weights, JIT, caches
        for _ in range(reps):
            start = time.perf_counter()
            denoise_with_noise(method.spec, noisy, noise)
            times.append(time.perf_counter() - start)
        out[method.label] = statistics.median(times)
    return out


# --------------------------------------------------------------------------- report


def build_report(out_dir: Path, *, quick: bool = False) -> Path:
    from rich.console import Console

    from ..hardware import machine_description
    from . import figures

    console = Console(stderr=True)
    plan = Plan.for_mode(quick)
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    data_out = out_dir / "data"
    for d in (fig_dir, data_out):
        d.mkdir(parents=True, exist_ok=True)
    models_dir = out_dir / "models" if quick else TRAINED_DIR
    runs_dir = (out_dir / "runs") if quick else (PROJECT_ROOT / "runs")
    cache = ScoreCache(out_dir / "cache.jsonl") if quick else default_cache()  # shared with `xraydenoise evaluate`
    started = time.monotonic()

    # Networks: reuse what exists, train what is missing.
    console.print("[bold]networks[/bold]")
    shipped = shipped_or_trained(models_dir, runs_dir, quick)
    nets = {name: ensure_model(name, models_dir, runs_dir, quick) for name in COMPARISON}
    loio = {inst: ensure_model(name, models_dir, runs_dir, quick) for inst, name in LOIO.items()}
    shipped_m = Method(str(shipped), SHIPPED)
    net_methods = [Method(str(p), n) for n, p in nets.items()]
    loio_methods = {inst: Method(str(p), LOIO[inst]) for inst, p in loio.items()}
    classical = [Method(m, m) for m in CLASSICAL]
    noisy_m = Method(NOISY, NOISY)

    records = get_split(plan.split)
    if plan.images:
        # a few of each source, so every group of every table has rows
        by_source: dict[str, list] = {}
        for r in records:
            by_source.setdefault(r.get("source"), []).append(r)
        records = [r for group in by_source.values() for r in group[: max(1, plan.images // len(by_source) + 1)]]

    # Tables 1, 2, 3, 4, 7, 8, 9: every method at every level on the test split.
    all_methods = [noisy_m] + classical + [shipped_m] + net_methods
    rows = evaluate(records, all_methods, plan.levels, size=plan.size, seed=plan.seed, cache=cache, description="Tables 1-4, 7-9")
    # The shipped model's opt-in geometric self-ensemble (8x the time), at the headline levels.
    ensemble_m = method_from_spec("network-x8") if shipped == shipped_weights() else None
    if ensemble_m:
        rows += evaluate(records, [ensemble_m], plan.levels, size=plan.size, seed=plan.seed, cache=cache, description="Table 3: self-ensemble")
    default = parse_noise(plan.default_level).label
    level_labels = [parse_noise(lv).label for lv in plan.levels]
    main_methods = [m.label for m in [noisy_m] + classical + [shipped_m] + net_methods[:3]]

    # Table 6: resolution, on the test images whose native long side reaches the largest size.
    big = [r for r in records if max(int(r.get("width") or 0), int(r.get("height") or 0)) >= max(plan.resolutions)][: plan.resolution_images]
    res_rows = []
    for size in plan.resolutions:
        res_rows += evaluate(big, [Method(m, m) for m in plan.resolution_methods] + [shipped_m], [plan.default_level], size=size, seed=plan.seed, cache=cache, description=f"Table 6 at {size} px")
    for r in res_rows:
        r["resolution"] = f"{r['size']} px"

    # Table 10: leave one institution out.
    loio_rows = []
    for inst, method in loio_methods.items():
        subset = [r for r in records if r.get("source") == inst]
        loio_rows += [dict(r, held_out=inst) for r in evaluate(subset, [method, net_methods[0], shipped_m, Method("bm3d", "bm3d")], [plan.default_level], size=plan.size, seed=plan.seed, cache=cache, description=f"Table 10: {inst}")]

    # PSNR against sigma.
    curve_levels = [str(s) for s in plan.curve_sigmas]
    curve_rows = evaluate(records[: plan.curve_images], [noisy_m] + classical + [shipped_m], curve_levels, size=plan.size, seed=plan.seed, cache=cache, description="PSNR vs sigma")

    # Table 5: cost.
    console.print("[bold]timing[/bold]")
    timings = time_methods(classical + [shipped_m] + ([ensemble_m] if ensemble_m else []) + net_methods, plan.timing_size, plan.seed)

    # Figures.
    console.print("[bold]figures[/bold]")
    example_paths = []
    for modality in ("chest", "extremity"):
        record = next((r for r in records if r.get("modality") == modality), None)
        if record is None:
            continue
        clean = prepare_image(record, plan.size)
        noise = parse_noise(plan.default_level)
        noisy = noise(clean, seed=noise_seed(record.image_id, noise.label, plan.seed)).astype(np.float32)
        from ..denoisers import denoise_with_noise

        outputs = {m.label: np.clip(denoise_with_noise(m.spec, noisy, noise), 0, 1) for m in classical + [shipped_m]}
        example_paths.append(figures.example_figure(clean, noisy, outputs, f"{record.image_id} ({record.get('region')}), Gaussian sigma {plan.default_level}/255: PSNR dB / SSIM", fig_dir / f"examples_{modality}.png"))
    train_record = get_split("train")[0]
    patch = prepare_image(train_record, plan.size)
    crop = min(192, *patch.shape)
    figures.augmentation_figure(patch[:crop, :crop], fig_dir / "augmentation.png")
    histories = {SHIPPED: history_of(shipped), **{n: history_of(p) for n, p in nets.items()}}
    figures.learning_curves_figure(histories, fig_dir / "learning_curves.png")
    figures.psnr_vs_sigma_figure(summarise(curve_rows), {GaussianNoise(s / 255).label: s for s in plan.curve_sigmas}, fig_dir / "psnr_vs_sigma.png")

    # Data.
    write_rows(rows + res_rows + loio_rows + curve_rows, data_out / "per_image.csv")
    write_rows([dict(r, table="main") for r in summarise(rows)], data_out / "summary.jsonl")
    cards = {name: read_card(p) for name, p in [(SHIPPED, shipped), *nets.items(), *((LOIO[i], p) for i, p in loio.items())]}
    (data_out / "timings.json").write_text(json.dumps({"size": plan.timing_size, "machine": machine_description(), "seconds": timings}, indent=2) + "\n")

    text = render(plan, rows, res_rows, loio_rows, timings, cards, main_methods, level_labels, default, records, shipped_m, net_methods, time.monotonic() - started, machine_description(), cache, ensemble_m)
    report = atomic_write_text(out_dir / "README.md", text)
    atomic_write_text(data_out / "headline.json", json.dumps(headline(rows, level_labels), indent=2) + "\n")
    if not quick and shipped == shipped_weights():
        record_test_scores(shipped, rows, plan)
    return report


def record_test_scores(weights: Path, rows: list[dict], plan: Plan) -> None:
    """Write the shipped model's test-split scores into its model card (the card travels with the weights)."""
    from ..weights import card_path

    card = read_card(weights)
    scores = headline([r for r in rows if r["method"] in (SHIPPED, method_from_spec("network-x8").label, "bm3d")], [parse_noise(lv).label for lv in plan.levels])
    card["test"] = {
        "protocol": f"{plan.split} split, long side <= {plan.size} px, blind network vs BM3D given the true noise level; "
        "mean PSNR (dB) / SSIM from scikit-image; regenerate with `xraydenoise report`",
        "scores": scores,
    }
    atomic_write_text(card_path(weights), json.dumps(card, indent=2) + "\n")


def headline(rows: list[dict], levels: list[str]) -> dict:
    summary = summarise(rows)
    out = {}
    for level in levels:
        cell = {r["method"]: r for r in summary if r["level"] == level}
        out[level] = {m: {"psnr": round(c["psnr_mean"], 2), "ssim": round(c["ssim_mean"], 4), "n": c["n"]} for m, c in cell.items()}
    return out


def render(plan, rows, res_rows, loio_rows, timings, cards, main_methods, levels, default, records, shipped_m, net_methods, seconds, machine, cache, ensemble_m=None) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_images = len({r["image"] for r in rows})
    sources = sorted({r.get("source") for r in records})
    arch_methods = [m.label for m in net_methods]
    command = "xraydenoise report --out docs/results" + (" --quick" if plan.quick else "")
    s = []
    s.append("# Results: X-ray denoising on real radiographs\n")
    if plan.quick:
        s.append("> **Quick mode**: a few images and networks trained for a handful of steps. This checks the pipeline; the numbers mean nothing.\n")
    s.append(f"Generated by `{command}` (or `make report`) on {now}, in {seconds / 60:.1f} minutes, on {machine}; "
             f"{cache.hits} of {cache.hits + cache.misses} scores came from the score cache of earlier runs "
             "(keyed by image, noise, seed, method and weights hash), the rest were computed.\n")
    s.append("## Protocol\n")
    s.append(f"- **Data**: the development set at `{data_dir().name}` ({', '.join(sources)}; real radiographs, CC0 / CC BY), "
             f"patient-level 80/10/10 split with seed 0 (`src/xraydenoise/data/splits/xray_dev_seed0.csv`); all tables use the **{plan.split}** split ({n_images} images).")
    s.append(f"- **Images**: read as 8-bit, scaled to [0, 1], downscaled (anti-aliased) so the long side is at most {plan.size} px, never upscaled; Table 6 resizes instead to each listed size.")
    s.append("- **Noise**: additive white Gaussian with sigma on the 8-bit scale (gaussian-25 = 25/255), not clipped; "
             "Poisson-Gaussian z = a·Poisson(x/a) + N(0, s²) with a = 0.01 and s = 5/255. Each (image, noise) pair has its own seed, so every method denoises the very same noisy image.")
    s.append("- **Methods**: classical filters are given the **true** noise level (Poisson-Gaussian through the generalised Anscombe transform and its exact unbiased inverse); "
             f"the networks are **blind** (they see only the noisy image), except `compare-unet-noisemap`, which is also given the per-pixel noise std. `{shipped_m.label}` is the shipped model.")
    s.append("- **Scores**: outputs clipped to [0, 1]; PSNR and SSIM from scikit-image (data range 1, 7x7 window). Cells are mean ± standard deviation over images; n is the number of images.\n")

    s.append(f"## Table 1: all methods at Gaussian sigma {plan.default_level}/255\n")
    s.append(grouped_table([r for r in rows if r["level"] == default], "level", main_methods + [m for m in arch_methods[3:]]))
    s.append(f"\nPaired comparison of `{shipped_m.label}` against BM3D (given the true sigma) on the same images: mean difference, share of images where the network wins, two-sided Wilcoxon signed-rank p.\n")
    s.append(paired_table(rows, shipped_m.label, "bm3d", [default]))

    s.append("\n## Table 2: by anatomical region\n")
    s.append(grouped_table([r for r in rows if r["level"] == default], "region", ["noisy", "nlm", "bm3d", shipped_m.label]))

    s.append("\n## Table 3: by noise level\n")
    s.append("Cells: PSNR mean ± std / SSIM mean.\n")
    s.append(level_table(rows, main_methods + ([ensemble_m.label] if ensemble_m else []), levels))
    s.append(f"\nPaired comparison of `{shipped_m.label}` against BM3D at every level:\n")
    s.append(paired_table(rows, shipped_m.label, "bm3d", levels))
    if ensemble_m:
        s.append(f"\n`{ensemble_m.label}` is the same network averaged over the 8 rotations and flips of each image "
                 "(`--method network-x8`, opt-in: 8x the time, Table 5). Against BM3D:\n")
        s.append(paired_table(rows, ensemble_m.label, "bm3d", levels))

    s.append("\n## Table 4: by architecture (same data, noise, loss, optimiser and step budget)\n")
    arch_lines = []
    summary = summarise(rows)
    for label in arch_methods:
        card = cards.get(label, {})
        cells = [label, FAMILY.get(card.get("architecture", ""), ""), f"{card.get('parameters', 0) / 1e6:.2f} M", card.get("training", {}).get("steps", "")]
        for level in levels:
            row = next((r for r in summary if r["level"] == level and r["method"] == label), None)
            cells.append(f"{row['psnr_mean']:.2f} / {row['ssim_mean']:.4f}" if row else "")
        arch_lines.append(cells)
    s.append(markdown_table(["model", "family", "parameters", "steps"] + levels, arch_lines, align=["l", "l", "r", "r"] + ["r"] * len(levels)))
    s.append("\n`compare-unet` and `compare-unet-noisemap` differ only in the noise-level map input: their rows answer whether the map helps. "
             "The shipped model is trained longer on larger patches (Table 5).\n")

    s.append(f"\n## Table 5: cost (CPU: {machine})\n")
    cost = []
    for label, card in cards.items():
        if label.startswith("loio-"):
            continue
        tr = card.get("training", {})
        # A model trained in stages (init_weights) reports the total over all of them.
        steps, seconds = tr.get("total_steps", tr.get("steps", "")), tr.get("total_seconds", tr.get("seconds", 0))
        cost.append([label, f"{card.get('parameters', 0) / 1e6:.2f} M", steps, f"{seconds / 60:.1f} min", tr.get("machine", ""), f"{timings.get(label, float('nan')):.2f} s"])
    if ensemble_m:
        cost.append([ensemble_m.label, f"(as {shipped_m.label})", "-", "-", "-", f"{timings.get(ensemble_m.label, float('nan')):.2f} s"])
    for method in CLASSICAL:
        cost.append([method, "-", "-", "-", "-", f"{timings.get(method, float('nan')):.2f} s"])
    s.append(markdown_table(["method", "parameters", "training steps", "training time", "trained on", f"inference per {plan.timing_size}x{plan.timing_size} image"], cost))
    s.append("\nInference: PyTorch eager fp32 for the networks, median of 3 runs after a warm-up (BM3D, NLM and TV: one run). No GPU was used. `make bench` measures speed more carefully (ONNX Runtime, bf16, memory).\n")

    s.append("\n## Table 6: by resolution\n")
    s.append(f"The same {len({r['image'] for r in res_rows})} test images (those at least {max(plan.resolutions)} px on the long side), resized to each size, Gaussian sigma {plan.default_level}/255.\n")
    s.append(grouped_table(res_rows, "resolution", list(plan.resolution_methods) + [shipped_m.label], order=[f"{x} px" for x in plan.resolutions]))

    for number, column, title in ((7, "category", "diagnostic category"), (8, "age_group", "age group"), (9, "modality", "modality")):
        s.append(f"\n## Table {number}: by {title}\n")
        s.append(grouped_table([r for r in rows if r["level"] == default], column, ["noisy", "nlm", "bm3d", shipped_m.label]))

    s.append("\n## Table 10: by institution, leave-one-institution-out\n")
    s.append("Each institution's test images are denoised by a U-Net trained **without** that institution's images (`loio-*`), "
             "next to the same recipe trained on all institutions (`compare-unet`, same step budget), the shipped model, and BM3D.\n")
    s.append(grouped_table(loio_rows, "held_out", sorted({r["method"] for r in loio_rows}, key=lambda m: (not m.startswith("loio"), m)), order=list(LOIO)) if loio_rows else "(no rows)")
    s.append(f"\nGaussian sigma {plan.default_level}/255.\n")

    s.append("\n## Figures\n")
    s.append("![chest example](figures/examples_chest.png)\n")
    s.append("![extremity example](figures/examples_extremity.png)\n")
    s.append("Noisy, each method and clean, with a zoom on the window of finest detail and |output - clean| maps.\n")
    s.append("![augmentation](figures/augmentation.png)\n")
    s.append("![learning curves](figures/learning_curves.png)\n")
    s.append("![PSNR vs sigma](figures/psnr_vs_sigma.png)\n")
    s.append("\n## Data\n")
    s.append("`data/per_image.csv`: one row per image, noise level and method (all tables); `data/summary.jsonl`: per method and level; "
             "`data/timings.json`; `data/headline.json`. Model cards: `trained/*.json` and `src/xraydenoise/pretrained/*.json`.\n")
    return "\n".join(s) + "\n"
