"""Run one training config end to end: data, Lightning trainer, callbacks, export."""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from ..data import get_split, read_dataset
from ..errors import ConfigError
from ..hardware import machine_description
from ..io._atomic import atomic_write, atomic_write_text
from ..models import count_parameters
from ..weights import ModelCard, save_weights
from .config import DataConfig, ModelConfig, TrainConfig
from .datasets import RandomPatchDataset, inherent_noise, load_images, validation_pairs, with_scales
from .hardware import lightning_precision
from .module import DenoiserModule

log = logging.getLogger(__name__)

#: The history of the run whose weights a run started from (``init_weights``), kept in its folder.
INIT_HISTORY = "init_history.csv"
HISTORY_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "val_psnr", "val_ssim", "lr", "elapsed_s"]


class EpochSeed(Callback):
    """Tell the patch dataset which epoch it is, so patches differ between epochs yet resume exactly."""

    def __init__(self, dataset: RandomPatchDataset) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.dataset.epoch = trainer.current_epoch


class History(Callback):
    """One CSV row per epoch (train/val loss, val PSNR/SSIM, lr, time) and a learning-curve plot."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / "history.csv"
        self.plot = run_dir / "learning_curve.png"
        self.elapsed_before = 0.0
        self.started = time.monotonic()

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state: dict) -> None:
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        if "train_loss_epoch" not in metrics:
            # A run resumed from the checkpoint that closed an epoch enters that epoch's end again
            # without having trained in it: its row is already written, with the real numbers.
            return
        value = lambda key: float(metrics[key]) if key in metrics else float("nan")  # noqa: E731
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "train_loss": value("train_loss_epoch"),
            "val_loss": value("val_loss"),
            "val_psnr": value("val_psnr"),
            "val_ssim": value("val_ssim"),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "elapsed_s": round(self.elapsed(), 1),
        }
        rows = read_history(self.path) if self.path.exists() else []
        rows = [r for r in rows if int(r["epoch"]) < row["epoch"]] + [row]  # a resumed run replaces rows it redoes
        write_history(self.path, rows)
        plot_learning_curve(rows, self.plot, title=pl_module.cfg.name)


def read_history(path: Path) -> list[dict]:
    with Path(path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_history(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def plot_learning_curve(rows: list[dict], out: Path, *, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax_loss.plot(steps, [float(r["train_loss"]) for r in rows], label="training")
    ax_loss.plot(steps, [float(r["val_loss"]) for r in rows], label="validation")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss (w MSE + (1-w)(1-SSIM))")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    ax_psnr.plot(steps, [float(r["val_psnr"]) for r in rows], color="C2")
    ax_psnr.set_xlabel("step")
    ax_psnr.set_ylabel("validation PSNR (dB)")
    fig.suptitle(f"learning curve {title}")
    fig.tight_layout()
    atomic_write(out, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)


def _records(cfg: TrainConfig, split: str):
    if cfg.data.root is None:
        records = get_split(split, seed=cfg.data.split_seed)
    else:
        from ..data import make_splits

        records = make_splits(read_dataset(Path(cfg.data.root)), seed=cfg.data.split_seed)[split]
    if cfg.data.exclude_institution:
        records = [r for r in records if r.get("institution") != cfg.data.exclude_institution and r.get("source") != cfg.data.exclude_institution]
    if not records:
        raise ConfigError(f"no {split} images left for config {cfg.name!r}")
    return records


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Train ``cfg``; returns the path of the exported safetensors weights."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    train_records = _records(cfg, "train")
    val_records = _records(cfg, "val")
    if cfg.data.train_images:
        train_records = train_records[: cfg.data.train_images]
    if cfg.data.val_images:
        val_records = val_records[: cfg.data.val_images]
    crop = int(round(cfg.data.patch_size * 1.5))  # room for +-15 degrees and zoom 0.8
    train_images = with_scales(load_images(train_records), cfg.data.scales)
    train_set = RandomPatchDataset(
        train_images, crop=crop, length=cfg.data.steps_per_epoch * cfg.data.batch_size, seed=cfg.seed,
        inherent=inherent_noise(train_images) if cfg.noise.inherent_mode() else None,
        overlay_probability=cfg.data.overlay_probability,
    )
    module = DenoiserModule(cfg.to_dict())
    val_set = TensorDataset(*validation_pairs(load_images(val_records), crop=cfg.data.val_crop, noise_models=cfg.noise.validation_models(),
                                              seed=cfg.seed, correlation=module.correlation, with_inherent=cfg.noise.inherent_mode()))

    train_loader = DataLoader(train_set, batch_size=cfg.data.batch_size, shuffle=False, num_workers=cfg.data.num_workers, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=16, shuffle=False, num_workers=0)

    last = run_dir / "checkpoints" / "last.ckpt"
    ckpt_path = str(last) if resume and last.exists() else None
    if resume and ckpt_path is None:
        log.warning("no checkpoint in %s: starting from scratch", last.parent)
    initialised_from = _initialise(module, cfg) if cfg.init_weights else None
    precision = lightning_precision(cfg.precision, cfg.accelerator)
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val_loss", mode="min", save_top_k=1)
    # The latest state, every epoch, for --resume. (save_last=True on the callback above copies a
    # checkpoint only when the monitored loss improves, so a resume would redo every epoch since.)
    latest = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
    history = History(run_dir)
    callbacks = [
        checkpoint,
        latest,
        # strict=False: a run whose step or time budget ends inside its first epoch never
        # validated, and must still finish and export its weights.
        EarlyStopping(monitor="val_loss", mode="min", patience=cfg.optim.early_stopping_patience, strict=False),
        LearningRateMonitor(logging_interval="epoch"),
        EpochSeed(train_set),
        history,
        TQDMProgressBar(refresh_rate=max(1, cfg.data.steps_per_epoch // 10)),
    ]
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        strategy=cfg.strategy,
        precision=precision,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        max_time=timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        gradient_clip_val=cfg.optim.gradient_clip or None,
        gradient_clip_algorithm="norm",
        callbacks=callbacks,
        logger=CSVLogger(run_dir, name="lightning_logs"),
        default_root_dir=run_dir,
        log_every_n_steps=max(1, min(50, cfg.data.steps_per_epoch)),
        num_sanity_val_steps=0,
        enable_model_summary=False,
        deterministic=False,
        use_distributed_sampler=True,
    )
    if trainer.is_global_zero:
        print(f"training {cfg.name}: {cfg.model.name} {cfg.model.options}, precision {precision}, "
              f"{len(train_records)} train / {len(val_records)} val images, machine {machine_description()}", flush=True)
    trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path)

    weights = run_dir / "model.safetensors"
    if trainer.is_global_zero:
        best = checkpoint.best_model_path or (str(last) if last.exists() else None)
        if best is not None:  # else no checkpoint was taken: the weights in memory are the run's
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
            module.load_state_dict(state)
        rows = read_history(history.path) if history.path.exists() else []
        best_row = min(rows, key=lambda r: float(r["val_loss"])) if rows else {}
        card: dict[str, Any] = {
            "name": cfg.name,
            "architecture": cfg.model.name,
            "options": cfg.model.options,
            "parameters": count_parameters(module.model),
            "blind": not module.model.uses_noise_map,
            "data": {
                "root": cfg.data.root or "XRAYDENOISE_DATA (dev set)",
                "split_seed": cfg.data.split_seed,
                "train_images": len(train_records),
                "val_images": len(val_records),
                "excluded_institution": cfg.data.exclude_institution,
            },
            "noise": {"mix": cfg.noise.mix, "validation": [str(m) for m in cfg.noise.validation_models()],
                      "told_std_error": cfg.noise.told_std_error, "told_correlation_error": cfg.noise.told_correlation_error,
                      "tell_inherent": cfg.noise.tell_inherent}
            if cfg.noise.mix else {
                "gaussian_sigma": [0.0, cfg.noise.gaussian_max],
                "poisson_gaussian_probability": cfg.noise.p_poisson_gaussian,
                "poisson_gain_a": [cfg.noise.a_min, cfg.noise.a_max],
                "electronic_sigma_s": [0.0, cfg.noise.s_max],
            },
            "training": {
                "steps": trainer.global_step,
                "epochs": trainer.current_epoch,
                "patch_size": cfg.data.patch_size,
                "batch_size": cfg.data.batch_size,
                "loss": f"{cfg.optim.mse_weight} * {'MSE / noise variance' if cfg.optim.noise_balanced_mse else 'MSE'}"
                f" + {1 - cfg.optim.mse_weight:.2f} * (1 - SSIM)",
                "precision": precision,
                "seconds": round(history.elapsed(), 1),
                "machine": machine_description(),
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "best_checkpoint_step": int(best_row.get("step", trainer.global_step)) if best_row else trainer.global_step,
            },
            "validation": {k: float(best_row[k]) for k in ("val_loss", "val_psnr", "val_ssim")} if best_row else {},
        }
        if initialised_from:
            card["training"]["initialised_from"] = initialised_from
            card["training"]["total_steps"] = trainer.global_step + int(initialised_from["steps"] or 0)
            card["training"]["total_seconds"] = round(history.elapsed() + float(initialised_from["seconds"] or 0), 1)
        save_weights(module.model, weights, ModelCard.from_dict(card))
        print(f"weights written to {weights}", flush=True)
    return weights


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


def _initialise(module: DenoiserModule, cfg: TrainConfig) -> dict:
    """Load ``cfg.init_weights`` into the module's network; returns what the card records about them."""
    from ..weights import load_state, read_card

    assert cfg.init_weights is not None  # called only when the config names them
    path = Path(cfg.init_weights)
    card = read_card(path)
    if card.architecture != cfg.model.name:
        raise ConfigError(
            f"init_weights {path}: made for {card.architecture} {card.options}, "
            f"not the config's {cfg.model.name} {cfg.model.options}"
        )
    state = {k: v.float() for k, v in load_state(path).items()}
    grown = card.options != cfg.model.options
    if grown:
        # A larger model of the same family (e.g. an RDN with more blocks) starts from one that
        # computes exactly what the trained one did; families that cannot grow say so in one line.
        from ..models import grow_state

        try:
            state = grow_state(cfg.model.name, state, module.model.state_dict(), card.options, cfg.model.options)
        except ConfigError as exc:
            raise ConfigError(f"init_weights {path}: {exc}") from None
    module.model.load_state_dict(state, strict=True)
    # Keep the earlier run's history beside this one, so the shipped learning curve shows both
    # (all of it, when the earlier run itself started from another).
    shipped_history = path.with_name(path.stem + ".history.csv")
    earlier_rows: list[dict] = []
    if shipped_history.is_file():
        earlier_rows = read_history(shipped_history)
    elif (path.parent / "history.csv").is_file() and path.parent.resolve() != Path(cfg.output_dir).resolve():
        earlier_rows = joined_history(path.parent)
    previous = card.training
    steps: int | None
    seconds: float | None
    if earlier_rows:
        write_history(Path(cfg.output_dir) / INIT_HISTORY, earlier_rows)
        # That history counts every earlier stage; a run's own card only knows the stage before it.
        steps, seconds = int(earlier_rows[-1]["step"]), float(earlier_rows[-1]["elapsed_s"])
    else:
        steps, seconds = previous.get("total_steps", previous.get("steps")), previous.get("total_seconds", previous.get("seconds"))
    started: dict[str, Any] = {"weights": str(cfg.init_weights), "steps": steps, "seconds": seconds}
    if grown:
        started["options"] = card.options
    return started


def folder_config(data: str | Path, output_dir: str | Path, *, init_weights: str | None = None,
                  minutes: float | None = None) -> TrainConfig:
    """A training config for a folder of the user's clean radiographs, without writing YAML.

    ``init_weights``: ``"shipped"`` (the shipped model), a weights path, or None (a new network
    of the shipped model's architecture). Starting from weights fine-tunes at a tenth of the
    paper's learning rate; the noise, patch and loss settings are the shipped recipe's. The
    config is written beside the weights (``config.json``) as for any run.
    """
    from ..weights import read_card, shipped_weights

    folder = Path(data)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: --data must be a folder of radiographs")
    if not read_dataset(folder):
        raise ConfigError(f"{folder}: no radiographs found (PNG, TIFF or DICOM, with or without a manifest.csv)")
    start = str(shipped_weights()) if init_weights in (None, "shipped") else str(init_weights)
    card = read_card(start)
    cfg = TrainConfig(
        name=Path(output_dir).name,
        model=ModelConfig(name=card.architecture, options=dict(card.options)),
        data=DataConfig(root=str(folder.resolve())),
        output_dir=str(output_dir),
        max_minutes=minutes,
        init_weights=None if init_weights is None else start,
    )
    if init_weights is not None:
        cfg.optim.lr = 1e-4
    return cfg


def run_config(path: str | Path | TrainConfig, *, resume: bool = False, **overrides) -> Path:
    cfg = path if isinstance(path, TrainConfig) else TrainConfig.from_yaml(path)
    top = {k: v for k, v in overrides.items() if v is not None}
    if top:
        cfg = cfg.replace(**top)
    return train(cfg, resume=resume)
