"""Training precision from the machine (see :mod:`xraydenoise.hardware`)."""

from __future__ import annotations

from typing import Literal

from ..hardware import cpu_has_bf16


def lightning_precision(requested: str, accelerator: str) -> Literal["32-true", "bf16-mixed", "16-mixed"]:
    """Map a config's ``precision`` (auto | bf16 | fp32) to a Lightning precision string."""
    if requested == "fp32":
        return "32-true"
    if requested == "bf16":
        return "bf16-mixed"
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32-true"
