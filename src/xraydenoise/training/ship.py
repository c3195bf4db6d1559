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
from .train import joined_history, write_history


def ship_run(run_dir: str | Path, dest_dir: str | Path, name: str, *, config: str | list[str] | None = None) -> Path:
    run_dir, dest_dir = Path(run_dir), Path(dest_dir)
    model = load_model(run_dir / "model.safetensors")
    card = dict(model.card)
    card["name"] = name
    training = card.get("training", {})
    earlier = training.get("initialised_from")
    history = joined_history(run_dir) if (run_dir / "history.csv").exists() else []
    if earlier and history:  # totals over every stage, from the joined history
        training["total_steps"] = int(history[-1]["step"])
        training["total_seconds"] = float(history[-1]["elapsed_s"])
    if config:
        configs = [config] if isinstance(config, str) else list(config)
        card["config"] = configs[-1] if len(configs) == 1 else configs
        card["command"] = " && ".join(f"xraydenoise train --config {c}" for c in configs)
    target = save_weights(model, dest_dir / f"{name}.safetensors", card, half=True)
    if history:
        write_history(dest_dir / f"{name}.history.csv", history)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print("usage: python -m xraydenoise.training.ship RUN_DIR DEST_DIR NAME [CONFIG ...]", file=sys.stderr)
        return 2
    print(ship_run(*args[:3], config=args[3:] or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
