"""Package a finished training run: weights in float16 safetensors, its model card and history.

    python -m xraydenoise.training.ship RUN_DIR DEST_DIR NAME [CONFIG ...]

CONFIG: the config(s) that made the run, in order (several when it started from the weights
of an earlier run); the card records them and the commands that reproduce the model.

float16 halves the file (the shipped U-Net is 4.5 MB instead of 9 MB); weights are converted
back to float32 on load, and the outputs move by far less than one grey level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..weights import load_model, save_weights
from .train import INIT_HISTORY, read_history, write_history


def ship_run(run_dir: str | Path, dest_dir: str | Path, name: str, *, config: str | list[str] | None = None) -> Path:
    run_dir, dest_dir = Path(run_dir), Path(dest_dir)
    model = load_model(run_dir / "model.safetensors")
    card = dict(model.card)
    card["name"] = name
    training = card.get("training", {})
    earlier = training.get("initialised_from")
    if earlier:  # totals over both runs (cards written before these fields existed lack them)
        training.setdefault("total_steps", int(training.get("steps", 0)) + int(earlier.get("steps") or 0))
        training.setdefault("total_seconds", round(float(training.get("seconds", 0)) + float(earlier.get("seconds") or 0), 1))
    if config:
        configs = [config] if isinstance(config, str) else list(config)
        card["config"] = configs[-1] if len(configs) == 1 else configs
        card["command"] = " && ".join(f"xraydenoise train --config {c}" for c in configs)
    target = save_weights(model, dest_dir / f"{name}.safetensors", card, half=True)
    history = run_dir / "history.csv"
    if history.exists():
        write_history(dest_dir / f"{name}.history.csv", joined_history(run_dir))
    return target


def joined_history(run_dir: Path) -> list[dict]:
    """The run's history, after the history of the run it started from (``init_weights``), if any.

    Steps, epochs and elapsed time of the later run are shifted to continue the earlier ones,
    so one learning curve shows the whole training.
    """
    rows = read_history(run_dir / "history.csv")
    earlier = run_dir / INIT_HISTORY
    if not earlier.exists():
        return rows
    before = read_history(earlier)
    if not before:
        return rows
    last = before[-1]
    shifted = [
        {
            **row,
            "epoch": int(row["epoch"]) + int(last["epoch"]) + 1,
            "step": int(row["step"]) + int(last["step"]),
            "elapsed_s": round(float(row["elapsed_s"]) + float(last["elapsed_s"]), 1),
        }
        for row in rows
    ]
    return before + shifted


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: python -m xraydenoise.training.ship RUN_DIR DEST_DIR NAME [CONFIG ...]", file=sys.stderr)
        return 2
    print(ship_run(*args[:3], config=args[3:] or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
