"""Training end to end on real dev radiographs, with tiny budgets."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

TINY = {
    "name": "tiny",
    "model": {"name": "unet", "options": {"base_channels": 4, "levels": 2}},
    "data": {"patch_size": 32, "batch_size": 4, "steps_per_epoch": 3, "train_images": 6, "val_images": 2, "val_crop": 48},
    "optim": {"mse_weight": 0.9},
    "max_epochs": 2,
    "precision": "fp32",
    "threads": 1,
    "seed": 3,
}


def write_config(tmp_path: Path, **changes) -> Path:
    cfg = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def history(run: Path) -> list[dict]:
    with (run / "history.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_train_writes_history_curve_weights_and_card(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "--config", write_config(tmp_path, output_dir=str(run)))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = history(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert int(rows[-1]["step"]) == 6
    import torch

    # --resume starts from last.ckpt: the latest epoch, whether or not its loss was the best
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert all(float(r["val_psnr"]) > 5 for r in rows)
    assert (run / "learning_curve.png").stat().st_size > 1000
    card = json.loads((run / "model.json").read_text())
    assert card["architecture"] == "unet" and card["training"]["steps"] == 6
    assert card["training"]["precision"] == "32-true"
    from xraydenoise.weights import load_model

    assert load_model(run / "model.safetensors").card.name == "tiny"


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(tmp_path):
    """SIGKILL after the first checkpoint, resume: same step count, same validation loss."""
    straight = tmp_path / "straight"
    assert run_cli("train", "--config", write_config(tmp_path, output_dir=str(straight), max_epochs=3)).returncode == 0

    killed = tmp_path / "killed"
    config = write_config(tmp_path, name="killed", output_dir=str(killed), max_epochs=3)
    proc = subprocess.Popen([sys.executable, "-m", "xraydenoise.cli", "train", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint was written before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists()

    resumed = run_cli("train", "--config", config, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = history(straight), history(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert float(b[-1]["val_loss"]) == pytest.approx(float(a[-1]["val_loss"]), rel=1e-3)
    # every epoch's row keeps its numbers: resuming does not rewrite the epoch its checkpoint closed
    assert all(r["train_loss"] != "nan" and r["val_psnr"] != "nan" for r in b), b


@pytest.mark.slow
def test_two_process_ddp_training_runs(tmp_path):
    run = tmp_path / "ddp"
    config = write_config(tmp_path, name="ddp", output_dir=str(run), max_epochs=1, data={"steps_per_epoch": 2})
    result = run_cli("train", "--config", config, "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
                     env={"MASTER_PORT": str(29500 + os.getpid() % 1000)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DDP" in result.stderr or "distributed" in result.stderr.lower()
    card = json.loads((run / "model.json").read_text())
    assert card["training"]["steps"] == 1  # 2 batches split over 2 processes: one step each


def test_bad_config_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: unet}\nlearning_rate: 3\n")
    result = run_cli("train", "--config", bad)
    assert result.returncode == 2
    assert "unknown option" in result.stderr and "Traceback" not in result.stderr
    missing = run_cli("train", "--config", tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "not found" in missing.stderr


@pytest.mark.slow
def test_training_from_earlier_weights_continues_them(tmp_path):
    """init_weights: the second run starts where the first ended, and shipping joins both histories."""
    first = tmp_path / "first"
    assert run_cli("train", "--config", write_config(tmp_path, output_dir=str(first), max_epochs=1)).returncode == 0
    from xraydenoise.training.ship import ship_run
    from xraydenoise.weights import load_model

    second = tmp_path / "second"
    config = write_config(tmp_path, name="second", output_dir=str(second), max_epochs=1, optim={"lr": 0.0})
    result = run_cli("train", "--config", config, "--init-weights", str(first / "model.safetensors"))
    assert result.returncode == 0, result.stderr[-2000:]
    # At lr 0 the weights cannot move: equal tensors prove they were loaded, not re-drawn.
    a, b = load_model(first / "model.safetensors"), load_model(second / "model.safetensors")
    assert all((a.state_dict()[k] == v).all() for k, v in b.state_dict().items())
    card = json.loads((second / "model.json").read_text())
    assert card["training"]["initialised_from"]["steps"] == 3
    assert card["training"]["total_steps"] == 6

    # A third stage counts all three: the history it keeps is the first two, joined.
    third = tmp_path / "third"
    config = write_config(tmp_path, name="third", output_dir=str(third), max_epochs=1, init_weights=str(second / "model.safetensors"))
    assert run_cli("train", "--config", config).returncode == 0
    assert json.loads((third / "model.json").read_text())["training"]["total_steps"] == 9

    shipped = ship_run(third, tmp_path / "pkg", "joined")
    with shipped.with_name("joined.history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [3, 6, 9] and [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert json.loads(shipped.with_suffix(".json").read_text())["training"]["total_steps"] == 9


@pytest.mark.slow
def test_initial_weights_of_another_architecture_are_a_one_line_error(tmp_path):
    first = tmp_path / "first"
    assert run_cli("train", "--config", write_config(tmp_path, output_dir=str(first), max_epochs=1)).returncode == 0
    other = write_config(tmp_path, name="other", output_dir=str(tmp_path / "other"),
                         model={"options": {"base_channels": 8, "levels": 2}}, init_weights=str(first / "model.safetensors"))
    result = run_cli("train", "--config", other)
    assert result.returncode == 2
    assert "init_weights" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_deeper_rdn_can_start_from_a_trained_shallower_one(tmp_path):
    """init_weights into more RDN blocks: at lr 0 the grown network denoises exactly as before."""
    import torch

    from xraydenoise.weights import load_model

    options = {"channels": 8, "blocks": 1, "layers_per_block": 2, "growth": 4}
    first = tmp_path / "first"
    config = write_config(tmp_path, output_dir=str(first), max_epochs=1, model={"name": "rdn", "options": options})
    assert run_cli("train", "--config", config).returncode == 0
    grown = tmp_path / "grown"
    config = write_config(tmp_path, name="grown", output_dir=str(grown), max_epochs=1, optim={"lr": 0.0},
                          model={"name": "rdn", "options": dict(options, blocks=3)}, init_weights=str(first / "model.safetensors"))
    result = run_cli("train", "--config", config)
    assert result.returncode == 0, result.stderr[-2000:]
    small, big = load_model(first / "model.safetensors"), load_model(grown / "model.safetensors")
    assert len(big.core.blocks) == 3
    x = torch.rand(1, 1, 45, 61)
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x), rtol=0, atol=1e-6)
    card = json.loads((grown / "model.json").read_text())
    assert card["training"]["initialised_from"]["options"]["blocks"] == 1
