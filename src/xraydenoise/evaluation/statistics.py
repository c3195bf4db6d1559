"""Statistics of the report: summaries and paired comparisons, small pure functions over score rows.

A *row* is what :func:`xraydenoise.evaluation.runner.evaluate` returns: one dict per
(image, noise level, method) with at least ``image``, ``level``, ``method``, ``psnr`` and
``ssim``. Nothing here reads files, runs a denoiser or formats text (that is
:mod:`~xraydenoise.evaluation.tables`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Paired", "Summary", "paired", "summaries", "summary", "wilcoxon_p"]


@dataclass(frozen=True)
class Summary:
    """PSNR and SSIM of one group of rows: mean, sample standard deviation (0 for one row), count."""

    n: int
    psnr_mean: float
    psnr_std: float
    ssim_mean: float
    ssim_std: float


@dataclass(frozen=True)
class Paired:
    """Method A against method B on the same noisy images: per-image differences A - B.

    ``*_diff`` is the mean difference, ``*_win`` the share of images where A is strictly
    better, ``*_p`` the two-sided Wilcoxon signed-rank p of the differences.
    """

    n: int
    psnr_diff: float
    psnr_win: float
    psnr_p: float
    ssim_diff: float
    ssim_win: float
    ssim_p: float


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and ``ddof=1`` std; an infinite PSNR (an output equal to the clean image) gives an
    infinite mean and an undefined (NaN) std, without a warning."""
    array = np.array(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summary(rows: Iterable[Mapping]) -> Summary:
    """The :class:`Summary` of ``rows`` (at least one)."""
    rows = list(rows)
    if not rows:
        raise ValueError("no rows to summarise")
    psnr_mean, psnr_std = _mean_std([r["psnr"] for r in rows])
    ssim_mean, ssim_std = _mean_std([r["ssim"] for r in rows])
    return Summary(len(rows), psnr_mean, psnr_std, ssim_mean, ssim_std)


def summaries(rows: Iterable[Mapping], by: Sequence[str] = ("level", "method")) -> dict[tuple, Summary]:
    """One :class:`Summary` per group of rows with equal ``by`` values, groups in first-seen order.

    The arithmetic is that of :func:`xraydenoise.evaluation.runner.summarise` (float64 mean,
    ``ddof=1`` standard deviation), so the two agree to the last bit.
    """
    groups: dict[tuple, list[Mapping]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in by), []).append(row)
    return {key: summary(members) for key, members in groups.items()}


def wilcoxon_p(differences: Sequence[float] | np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences; 1 when they are all (close to) zero."""
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    if np.allclose(d, 0):
        return 1.0
    return float(wilcoxon(d).pvalue)


def paired(rows: Iterable[Mapping], method_a: str, method_b: str, level: str) -> Paired | None:
    """``method_a`` against ``method_b`` at noise ``level``, on the images both were scored on.

    None when fewer than two images are in common (no test is possible).
    """
    rows = list(rows)
    a = {r["image"]: r for r in rows if r["method"] == method_a and r["level"] == level}
    b = {r["image"]: r for r in rows if r["method"] == method_b and r["level"] == level}
    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return None
    dp = np.array([a[i]["psnr"] - b[i]["psnr"] for i in common])
    ds = np.array([a[i]["ssim"] - b[i]["ssim"] for i in common])
    return Paired(
        n=len(common),
        psnr_diff=float(dp.mean()),
        psnr_win=float((dp > 0).mean()),
        psnr_p=wilcoxon_p(dp),
        ssim_diff=float(ds.mean()),
        ssim_win=float((ds > 0).mean()),
        ssim_p=wilcoxon_p(ds),
    )
