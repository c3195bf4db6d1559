"""LightningModule: the paper's recipe (MSE + SSIM loss, Adam, reduce-on-plateau) on noisy patches."""

from __future__ import annotations

import lightning as L
import torch

from ..data.augmentation import Augment
from ..models import create_model
from ..noise import NoiseMix
from .config import NoiseConfig, TrainConfig
from .datasets import tell_inherent
from .losses import combined_loss, psnr_per_image, ssim_per_image


def draw_noise(clean: torch.Tensor, noise: NoiseMix | NoiseConfig, generator: torch.Generator, *,
               correlation: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch noise from a noise mix (or a config's ``NoiseConfig.to_mix()``), one model per patch.

    The models are the ones the evaluation samples in numpy (xraydenoise.noise), drawn here
    with their torch samplers. Returns the noisy batch and its condition: the per-pixel noise
    std map, then the correlation channels when ``correlation`` (xraydenoise.noise.condition).
    """
    mix = noise if isinstance(noise, NoiseMix) else noise.to_mix()
    return mix.sample_torch(clean, generator, correlation=correlation)


def perturb_condition(condition: torch.Tensor, generator: torch.Generator, *, std_error: float,
                      correlation_error: float) -> torch.Tensor:
    """The condition as an estimate from the image would give it: the std map off by a factor
    ``exp(N(0, std_error^2))`` and each correlation value by ``N(0, correlation_error^2)``, per patch.

    A network told the exact noise in training and an estimate in use would trust the estimate
    blindly; trained on conditions as wrong as estimates are, it learns to read them as a hint.
    """
    b = condition.shape[0]
    shape = (b, 1, 1, 1)
    factor = torch.exp(std_error * torch.randn(shape, generator=generator, dtype=condition.dtype))
    told = [condition[:, :1] * factor.to(condition.device)]
    if condition.shape[1] > 1:
        shift = correlation_error * torch.randn((b, condition.shape[1] - 1, 1, 1), generator=generator, dtype=condition.dtype)
        told.append((condition[:, 1:] + shift.to(condition.device)).clamp(0.0, 1.0))
    return torch.cat(told, dim=1)


class DenoiserModule(L.LightningModule):
    def __init__(self, config: dict) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.cfg = TrainConfig.from_dict(config)
        self.model = create_model(self.cfg.model.name, **self.cfg.model.options)
        self.augment = Augment(self.cfg.data.patch_size, self.cfg.data.affine_probability)
        self.noise_mix = self.cfg.noise.to_mix()  # parsed once: specs may name kernel files
        self.correlation = getattr(self.model, "noise_channels", 0) > 1
        self.val_batches: list = []

    def forward(self, noisy: torch.Tensor, noise_map: torch.Tensor | None = None) -> torch.Tensor:
        if self.model.uses_noise_map:
            return self.model(noisy, noise_map)
        return self.model(noisy)

    def _to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def on_fit_start(self) -> None:
        if self.cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        crops, inherent = batch if isinstance(batch, (list, tuple)) else (batch, None)
        # Seed augmentation and noise from the global step (and rank), so a resumed run
        # continues exactly as an uninterrupted one would.
        seed = self.cfg.seed * 1_000_003 + self.global_step * 7919 + self.global_rank
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            clean = self.augment(crops.float().cpu()).contiguous()
            noisy, condition = draw_noise(clean, self.noise_mix, generator, correlation=self.correlation)
            std_map = condition[:, :1]
            if inherent is not None:  # what an estimate from this image would read (tell_inherent)
                condition = tell_inherent(condition, noisy, inherent, correlation=self.cfg.noise.inherent_mode() == "all")
            told = condition
            if self.cfg.noise.told_std_error or self.cfg.noise.told_correlation_error:
                told = perturb_condition(condition, generator, std_error=self.cfg.noise.told_std_error,
                                         correlation_error=self.cfg.noise.told_correlation_error)
        clean, noisy, std_map, told = (self._to_memory_format(t.to(self.device)) for t in (clean, noisy, std_map, told))
        pred = self(noisy, told)
        balance = std_map if self.cfg.optim.noise_balanced_mse else None
        loss = combined_loss(pred, clean, self.cfg.optim.mse_weight, balance)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=clean.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        clean, noisy, condition, level = batch
        std_map = condition[:, :1]
        pred = self(self._to_memory_format(noisy), self._to_memory_format(condition)).float().clamp(0, 1)
        balance = std_map if self.cfg.optim.noise_balanced_mse else None
        loss = combined_loss(pred, clean, self.cfg.optim.mse_weight, balance)
        n = clean.shape[0]
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val_psnr", psnr_per_image(pred, clean).mean(), on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val_ssim", ssim_per_image(pred, clean).mean(), on_epoch=True, batch_size=n, sync_dist=True)
        self.val_batches.append((level.cpu(), psnr_per_image(pred, clean).cpu()))

    def on_validation_epoch_end(self) -> None:
        # Mean PSNR per validation noise level, in the log: the mean over levels hides which
        # kind of noise the network is learning and which it is trading away.
        if not self.val_batches or not self.trainer.is_global_zero:
            self.val_batches.clear()
            return
        levels = torch.cat([lv for lv, _ in self.val_batches])
        psnr = torch.cat([p for _, p in self.val_batches])
        self.val_batches.clear()
        names = [str(m) for m in self.cfg.noise.validation_models()]
        parts = [f"{names[j] if j < len(names) else j}: {psnr[levels == j].mean():.3f}" for j in sorted(set(levels.tolist()))]
        print(f"step {self.global_step} val PSNR by level: " + ", ".join(parts), flush=True)

    def configure_optimizers(self):
        optim = torch.optim.Adam(self.model.parameters(), lr=self.cfg.optim.lr)
        if self.cfg.optim.cosine and self.cfg.max_steps > 0:
            period = self.cfg.optim.cosine_steps or self.cfg.max_steps
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=period, eta_min=self.cfg.optim.lr * 0.01)
            return {"optimizer": optim, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optim, mode="min", factor=self.cfg.optim.plateau_factor, patience=self.cfg.optim.plateau_patience
        )
        return {"optimizer": optim, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}}
