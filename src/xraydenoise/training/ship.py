"""Package a finished training run: weights in float16 safetensors, its model card and history.

    python -m xraydenoise.training.ship RUN_DIR DEST_DIR NAME

float16 halves the file (the shipped U-Net is 4.5 MB instead of 9 MB); weights are converted
back to float32 on load, and the outputs move by far less than one grey level.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..weights import load_model, save_weights


def ship_run(run_dir: str | Path, dest_dir: str | Path, name: str, *, config: str | None = None) -> Path:
    run_dir, dest_dir = Path(run_dir), Path(dest_dir)
    model = load_model(run_dir / "model.safetensors")
    card = dict(model.card)
    card["name"] = name
    if config:
        card["config"] = config
        card["command"] = f"xraydenoise train --config {config}"
    target = save_weights(model, dest_dir / f"{name}.safetensors", card, half=True)
    history = run_dir / "history.csv"
    if history.exists():
        shutil.copyfile(history, dest_dir / f"{name}.history.csv")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print("usage: python -m xraydenoise.training.ship RUN_DIR DEST_DIR NAME [CONFIG]", file=sys.stderr)
        return 2
    print(ship_run(*args[:3], config=args[3] if len(args) == 4 else None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
