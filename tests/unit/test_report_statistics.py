"""Tests for xraydenoise.evaluation.statistics: summaries and paired tests on small hand-made rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import wilcoxon

from xraydenoise.evaluation.statistics import (
    Paired,
    Summary,
    paired,
    summaries,
    summary,
    wilcoxon_p,
)


def rows_of(method: str, level: str, psnrs: list[float], ssims: list[float] | None = None) -> list[dict]:
    ssims = ssims if ssims is not None else [0.5] * len(psnrs)
    return [{"image": f"img{i}", "level": level, "method": method, "psnr": p, "ssim": s} for i, (p, s) in enumerate(zip(psnrs, ssims))]


A = [30.0, 31.5, 29.0, 33.2, 28.4, 35.1, 30.9]
B = [29.0, 31.9, 27.5, 32.0, 28.0, 33.3, 31.0]


def test_paired_win_rate_mean_difference_and_wilcoxon_p_match_scipy():
    ssim_a = [0.80, 0.82, 0.79, 0.90, 0.70, 0.95, 0.81]
    ssim_b = [0.81, 0.80, 0.75, 0.88, 0.69, 0.90, 0.83]
    rows = rows_of("net", "gaussian-25", A, ssim_a) + rows_of("bm3d", "gaussian-25", B, ssim_b)
    result = paired(rows, "net", "bm3d", "gaussian-25")
    d = np.subtract(A, B)
    assert isinstance(result, Paired) and result.n == 7
    assert result.psnr_diff == pytest.approx(d.mean()) and result.psnr_diff > 0
    assert result.psnr_win == pytest.approx(5 / 7)  # two images where B is better
    assert result.psnr_p == pytest.approx(wilcoxon(d).pvalue)
    ds = np.subtract(ssim_a, ssim_b)
    assert result.ssim_diff == pytest.approx(ds.mean())
    assert result.ssim_win == pytest.approx(5 / 7)
    assert result.ssim_p == pytest.approx(wilcoxon(ds).pvalue)


def test_paired_is_antisymmetric_in_its_methods():
    rows = rows_of("net", "gaussian-25", A) + rows_of("bm3d", "gaussian-25", B)
    ab, ba = paired(rows, "net", "bm3d", "gaussian-25"), paired(rows, "bm3d", "net", "gaussian-25")
    assert ab.psnr_diff == pytest.approx(-ba.psnr_diff) and ba.psnr_diff < 0
    assert ab.psnr_win + ba.psnr_win == pytest.approx(1.0)  # no ties in these rows
    assert ab.psnr_p == pytest.approx(ba.psnr_p)


def test_paired_uses_only_the_images_both_methods_have_at_that_level():
    rows = rows_of("net", "gaussian-25", A) + rows_of("bm3d", "gaussian-25", B[:4])
    rows += rows_of("bm3d", "gaussian-50", [0.0] * 7)  # another level: ignored
    result = paired(rows, "net", "bm3d", "gaussian-25")
    assert result.n == 4
    assert result.psnr_diff == pytest.approx(np.subtract(A[:4], B[:4]).mean())


def test_paired_needs_two_common_images():
    rows = rows_of("net", "gaussian-25", A[:1]) + rows_of("bm3d", "gaussian-25", B[:1])
    assert paired(rows, "net", "bm3d", "gaussian-25") is None
    assert paired(rows, "net", "nlm", "gaussian-25") is None


def test_identical_methods_have_p_one_and_no_wins():
    rows = rows_of("net", "gaussian-25", A) + rows_of("copy", "gaussian-25", A)
    result = paired(rows, "net", "copy", "gaussian-25")
    assert result.psnr_diff == 0 and result.psnr_win == 0 and result.psnr_p == 1.0
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0


def test_summary_mean_std_and_count():
    s = summary(rows_of("net", "gaussian-25", [30.0, 32.0, 34.0], [0.7, 0.8, 0.9]))
    assert s == Summary(3, 32.0, 2.0, pytest.approx(0.8), pytest.approx(0.1))
    one = summary(rows_of("net", "gaussian-25", [30.0]))
    assert one.n == 1 and one.psnr_std == 0.0 and one.ssim_std == 0.0
    with pytest.raises(ValueError):
        summary([])


def test_an_infinite_psnr_gives_an_infinite_mean():
    s = summary(rows_of("noisy", "gaussian-0", [math.inf, math.inf]))
    assert s.psnr_mean == math.inf and s.ssim_mean == 0.5


def test_summaries_group_in_first_seen_order_and_agree_with_the_runner():
    from xraydenoise.evaluation.runner import summarise

    rows = rows_of("b", "gaussian-10", [30.0, 31.0]) + rows_of("a", "gaussian-10", [28.0, 29.5]) + rows_of("b", "gaussian-50", [20.0, 22.0])
    for row in rows:
        row["seconds"] = 0.1
    cells = summaries(rows)
    assert list(cells) == [("gaussian-10", "b"), ("gaussian-10", "a"), ("gaussian-50", "b")]
    for reference in summarise(rows):
        cell = cells[(reference["level"], reference["method"])]
        assert (cell.n, cell.psnr_mean, cell.psnr_std, cell.ssim_mean, cell.ssim_std) == (
            reference["n"], reference["psnr_mean"], reference["psnr_std"], reference["ssim_mean"], reference["ssim_std"])
    by_method = summaries(rows, by=("method",))
    assert by_method[("b",)].n == 4
