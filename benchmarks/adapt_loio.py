"""`xraydenoise adapt` measured as a hospital would use it: an institution and a noise the network never saw.

The network (``trained/adapt-base-no-fracatlas``, configs/adapt-base-no-fracatlas.yaml) was
trained without any FracAtlas image and on Gaussian-kernel noise up to 0.8 px only. FracAtlas's
test-split films, with detector noise of settings outside that training (signal-dependent,
through wider and other-shaped kernels), play the hospital's archive: ``adapt`` sees only
the noisy images, with the time budget given, and both networks then denoise those same
images (the hospital's use). The clean images, which adaptation never sees, score them,
beside BM3D told the exact noise power spectrum.

    python benchmarks/adapt_loio.py [--minutes 10] [--out docs/results]

writes ``data/adapt.json`` (read by the report) and ``docs/adapt.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: Noise outside the base network's training: signal-dependent, through an exponential kernel
#: (it saw only Gaussian ones) and through a Gaussian kernel wider than any it saw.
NOISES = ["pg:0.01:3@exp:1.2", "pg:0.02:2@gauss:1.4"]
INSTITUTION = "fracatlas"
BASE = ROOT / "trained" / "adapt-base-no-fracatlas.safetensors"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="adaptation budget per noise (default 10)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results", help="report folder (data/adapt.json)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "adapt.md", help="the markdown page")
    parser.add_argument("--limit", type=int, default=40, help="at most this many images (default 40)")
    parser.add_argument("--size", type=int, default=512, help="long side of the images, as evaluate uses (default 512)")
    args = parser.parse_args(argv)

    import numpy as np

    from xraydenoise.data import get_split
    from xraydenoise.evaluation.runner import ScoreCache, evaluate, noise_seed, prepare_image, summarise
    from xraydenoise.hardware import machine_description
    from xraydenoise.noise import parse_noise
    from xraydenoise.training.adapt import adapt
    from xraydenoise.weights import shipped_weights

    if not BASE.is_file():
        print(f"error: {BASE} not found: make it with 'xraydenoise train --config configs/adapt-base-no-fracatlas.yaml && "
              "xraydenoise ship runs/adapt-base-no-fracatlas --name adapt-base-no-fracatlas --out trained'", file=sys.stderr)
        return 2
    records = [r for r in get_split("test") if r.get("source") == INSTITUTION][: args.limit]
    images = {r.image_id: prepare_image(r, args.size) for r in records}
    rows, runs = [], []
    work = Path(tempfile.mkdtemp(prefix="adapt-loio-"))
    for spec in NOISES:
        model = parse_noise(spec)
        # the noisy images evaluate will score, drawn with its seeds: adaptation sees exactly these
        noisy = [model.sample(images[r.image_id], seed=noise_seed(r.image_id, model.label, 0)) for r in records]
        started = time.monotonic()
        result = adapt(noisy, out=work / f"adapted-{model.label}.safetensors", minutes=args.minutes, from_weights=BASE)
        runs.append({"noise": spec, "adapted": result.adapted, "steps": result.steps, "seconds": round(result.seconds, 1),
                     "wall_seconds": round(time.monotonic() - started, 1), "held_out": result.held_out,
                     "held_out_psnr_estimate": [round(result.psnr_before, 3), round(result.psnr_after, 3)],
                     "estimated_noise": result.noise[:5]})
        print(result.message, flush=True)
        methods = ["noisy", "bm3d", str(BASE), str(result.weights), "network"]
        scored = evaluate(records, methods, [model], size=args.size, cache=ScoreCache(None), description=f"scoring {spec}")
        rename = {Path(result.weights).stem: "adapted", BASE.stem: "not adapted"}
        for row in scored:
            row["method"] = rename.get(row["method"], row["method"])
        rows.extend(scored)
    summary = summarise(rows)
    base_name = {"noisy": "noisy input", "bm3d": "BM3D told the exact PSD", "not adapted": "network without adaptation",
                 "adapted": "network adapted", }
    table = [{"institution": INSTITUTION, "noise": next(s for s in NOISES if parse_noise(s).label == row["level"]),
              "images": row["n"], "method": base_name.get(row["method"], f"shipped network ({row['method']})"),
              "psnr": round(row["psnr_mean"], 3), "psnr_std": round(row["psnr_std"], 3), "ssim": round(row["ssim_mean"], 4),
              "n": row["n"]} for row in summary]
    paired = []
    for spec in NOISES:
        label = parse_noise(spec).label
        per = {(r["method"], r["image"]): r for r in rows if r["level"] == label}
        ids = [r.image_id for r in records]
        for other in ("not adapted", "bm3d"):
            diff = np.array([per[("adapted", i)]["psnr"] - per[(other, i)]["psnr"] for i in ids])
            paired.append({"noise": spec, "versus": base_name[other], "delta_psnr": round(float(diff.mean()), 3),
                           "wins": int((diff > 0).sum()), "n": len(ids)})
    import torch

    data = {"command": f"python benchmarks/adapt_loio.py --minutes {args.minutes:g}", "machine": machine_description(),
            "threads": torch.get_num_threads(),
            "minutes": args.minutes, "base": BASE.name, "shipped": shipped_weights().name, "size": args.size,
            "runs": runs, "rows": table, "paired": paired}
    out = args.out / "data" / "adapt.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    args.docs.write_text(render(data))
    print(f"wrote {out} and {args.docs}")
    return 0


def render(data: dict) -> str:
    lines = [
        "# Adapting to one's own detector without clean images",
        "",
        f"Generated by `{data['command']}` on {data['machine']}, {data.get('threads', '?')} thread(s) for the network; do not edit by hand.",
        "",
        f"The network `{data['base']}` was trained without any {INSTITUTION} film and on Gaussian-kernel noise up to",
        "0.8 px. Each row adapts it with `xraydenoise adapt` (Recorrupted-to-Recorrupted with the noise estimated per image",
        f"and its std taken at the image smoothed; see `xraydenoise adapt --help`) on the noisy {INSTITUTION} test-split images alone, for {data['minutes']:g}",
        f"minutes of this CPU, then scores both networks on those images against the clean ones (long side {data['size']} px).",
        "",
        "| noise | method | PSNR (dB) | SSIM | n |",
        "|---|---|---:|---:|---:|",
    ]
    for row in data["rows"]:
        lines.append(f"| `{row['noise']}` | {row['method']} | {row['psnr']:.2f} ± {row['psnr_std']:.2f} | {row['ssim']:.4f} | {row['n']} |")
    lines += ["", "| noise | adapted network versus | Δ PSNR (dB) | images where adapted is better |", "|---|---|---:|---:|"]
    for row in data["paired"]:
        lines.append(f"| `{row['noise']}` | {row['versus']} | {row['delta_psnr']:+.3f} | {row['wins']} / {row['n']} |")
    lines += ["", "| noise | steps | minutes | kept | held-out estimate before → after (dB) |", "|---|---:|---:|---|---|"]
    for run in data["runs"]:
        before, after = run["held_out_psnr_estimate"]
        kept = "adapted" if run["adapted"] else "start weights"
        lines.append(f"| `{run['noise']}` | {run['steps']} | {run['seconds'] / 60:.1f} | {kept} | {before:.2f} → {after:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
