"""Tests for xraydenoise.evaluation.tables: each report table from tiny named data."""

from __future__ import annotations

import math

from xraydenoise.evaluation import tables
from xraydenoise.evaluation.statistics import Paired, Summary


def cell(psnr: float, ssim: float = 0.9, *, n: int = 3, psnr_std: float = 0.5, ssim_std: float = 0.01) -> Summary:
    return Summary(n=n, psnr_mean=psnr, psnr_std=psnr_std, ssim_mean=ssim, ssim_std=ssim_std)


def parse(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and body rows of a Markdown table (the rule line checked and dropped)."""
    lines = markdown.strip().splitlines()

    def split(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    assert set(lines[1].replace("|", "").split()) <= {"---", "---:"}
    return split(lines[0]), [split(line) for line in lines[2:]]


def test_grouped_table_columns_group_then_method_order_and_plus_minus():
    cells = {("leg", "bm3d"): cell(36.874, 0.94476, n=9, psnr_std=0.761, ssim_std=0.01044),
             ("chest", "bm3d"): cell(35.36), ("chest", "noisy"): cell(20.5, 0.18), ("", "noisy"): cell(21.0)}
    text = tables.grouped_table(tables.GroupedTable(by="region", methods=["noisy", "bm3d"], cells=cells))
    headers, rows = parse(text)
    assert headers == ["region", "method", "n", "PSNR (dB)", "SSIM"]
    # groups sorted, methods in the order given; a blank group is named
    assert [r[:2] for r in rows] == [["(blank)", "noisy"], ["chest", "noisy"], ["chest", "bm3d"], ["leg", "bm3d"]]
    assert rows[-1][2:] == ["9", "36.87 ± 0.76", "0.9448 ± 0.0104"]
    ordered = tables.grouped_table(tables.GroupedTable(by="region", methods=["bm3d"], cells=cells, groups=["leg", "chest"]))
    assert [r[0] for r in parse(ordered)[1]] == ["leg", "chest"]


def test_level_table_one_row_per_method_and_dash_for_an_infinite_psnr():
    cells = {("gaussian-10", "bm3d"): cell(40.466, 0.95972, psnr_std=2.004), ("gaussian-0", "bm3d"): cell(math.inf, 1.0, psnr_std=math.nan),
             ("gaussian-0", "net"): cell(74.731, 0.99991)}
    text = tables.level_table(tables.LevelTable(methods=["bm3d", "net"], levels=["gaussian-10", "gaussian-0"], cells=cells, n=40))
    headers, rows = parse(text)
    assert headers == ["method", "gaussian-10 (n=40)", "gaussian-0 (n=40)"]
    assert rows == [["bm3d", "40.47 ± 2.00 / 0.9597", "— / 1.0000"], ["net", "", "74.73 ± 0.50 / 0.9999"]]


def test_paired_table_three_decimal_delta_psnr_percent_win_rates_and_p_values():
    p = Paired(n=40, psnr_diff=0.6576, psnr_win=0.95, psnr_p=2.5e-11, ssim_diff=0.01623, ssim_win=1.0, ssim_p=0.0123)
    worse = Paired(n=40, psnr_diff=-0.12, psnr_win=0.25, psnr_p=0.5, ssim_diff=-0.001, ssim_win=0.4, ssim_p=0.9)
    rows = [tables.PairedRow("gaussian-25", paired=p), tables.PairedRow("gaussian-50", paired=None),
            tables.PairedRow("gaussian-10-gauss1", paired=worse), tables.PairedRow("gaussian-0", identity=cell(74.7312, 0.99991, n=40))]
    headers, body = parse(tables.paired_table(rows))
    assert headers == ["noise", "n", "ΔPSNR (dB)", "PSNR win rate", "Wilcoxon p", "ΔSSIM", "SSIM win rate", "Wilcoxon p"]
    assert body[0] == ["gaussian-25", "40", "+0.658", "95%", "2.5e-11", "+0.0162", "100%", "0.012"]
    assert body[1][:3] == ["gaussian-10-gauss1", "40", "-0.120"]  # a level without a test is left out
    assert body[2][0] == "gaussian-0 (vs the identity)" and "74.73" in body[2][2] and body[2][3:5] == ["—", "—"]
    assert tables.fmt_p(0.0004) == "4.0e-04" and tables.fmt_p(0.05) == "0.050"


def test_three_decimals_keep_a_difference_just_below_a_target():
    p = Paired(n=5, psnr_diff=0.4994, psnr_win=0.6, psnr_p=0.3, ssim_diff=0.0, ssim_win=0.0, ssim_p=1.0)
    assert parse(tables.paired_table([tables.PairedRow("gaussian-25", paired=p)]))[1][0][2] == "+0.499"


def test_architecture_table_reads_named_rows():
    row = tables.ArchitectureRow(label="compare-rdn", family="DenseNet-style", parameters=160_123, steps=2000,
                                 cells={"gaussian-10": cell(37.384, 0.94962)})
    headers, body = parse(tables.architecture_table(tables.ArchitectureTable(levels=["gaussian-10", "gaussian-25"], rows=[row])))
    assert headers == ["model", "family", "parameters", "steps", "gaussian-10", "gaussian-25"]
    assert body == [["compare-rdn", "DenseNet-style", "0.16 M", "2000", "37.38 / 0.9496", ""]]


def test_cost_table_networks_variants_and_filters():
    rows = [tables.CostRow("rdn", 0.5, parameters=230_308, training_steps=39082, training_seconds=15909.4, trained_on="EPYC"),
            tables.CostRow("rdn-x8", 4.04, same_as="rdn"), tables.CostRow("bm3d", 12.346)]
    headers, body = parse(tables.cost_table(tables.CostTable(timing_size=1024, rows=rows)))
    assert headers[-1] == "inference per 1024x1024 image"
    assert body == [["rdn", "0.23 M", "39082", "265.2 min", "EPYC", "0.50 s"],
                    ["rdn-x8", "(as rdn)", "-", "-", "-", "4.04 s"],
                    ["bm3d", "-", "-", "-", "-", "12.35 s"]]


def test_detector_table_rows_are_levels_and_columns_are_methods():
    columns = [tables.DetectorColumn("bm3d", "BM3D (told the true PSD)"), tables.DetectorColumn("net", "net (blind)")]
    cells = {("gaussian-10-gauss1", "bm3d"): cell(33.214, 0.88123, psnr_std=1.5, ssim_std=0.0312), ("gaussian-10-gauss1", "net"): cell(34.0)}
    headers, body = parse(tables.detector_table(tables.DetectorTable(levels=["gaussian-10-gauss1", "gaussian-25-gauss1"], columns=columns, cells=cells, n=3)))
    assert headers == ["noise (n=3)", "BM3D (told the true PSD)", "net (blind)"]
    assert body[0] == ["gaussian-10-gauss1", "33.21 ± 1.50 / 0.8812 ± 0.0312", "34.00 ± 0.50 / 0.9000 ± 0.0100"]
    assert body[1] == ["gaussian-25-gauss1", "", ""]


def test_physics_table_mtf_and_nps_ratio_columns():
    rows = [tables.PhysicsRow("gaussian-10-gauss1", "noisy input", {0.25: 0.6012, 0.4: 0.3001}, None),
            tables.PhysicsRow("gaussian-10-gauss1", "bm3d", {0.25: 0.5, 0.4: 0.12345}, {0.1: 0.25, 0.4: 0.0123456})]
    headers, body = parse(tables.physics_table(tables.PhysicsTable(mtf_frequencies=[0.25, 0.4], nps_frequencies=[0.1, 0.4], rows=rows)))
    assert headers == ["noise", "method", "MTF at 0.25", "MTF at 0.4", "NPS out / in at 0.1", "NPS out / in at 0.4"]
    assert body[0][2:] == ["0.601", "0.300", "1 (reference)", "1 (reference)"]
    assert body[1][2:] == ["0.500", "0.123", "0.25", "0.0123"]


def test_adaptation_table_from_the_benchmark_json():
    raw = {"command": "python -m xraydenoise.evaluation.adapt_benchmark", "machine": "2-core EPYC", "minutes": 42.4,
           "rows": [{"institution": "fracatlas", "noise": "pg:0.01:3@exp:0.7", "images": 20, "method": "adapted", "psnr": 35.123, "ssim": 0.91234, "n": 10},
                    {"institution": "fracatlas", "noise": "pg:0.01:3@exp:0.7", "images": 0, "method": "shipped",
                     "psnr": {"mean": 34.5, "std": 1.25}, "ssim": "n/a", "n": 10}]}
    table = tables.AdaptationTable.from_json(raw)
    assert table.minutes == 42.4 and table.machine == "2-core EPYC"
    headers, body = parse(tables.adaptation_table(table))
    assert headers == ["institution", "noise", "images", "method", "PSNR (dB)", "SSIM", "n"]
    assert body[0] == ["fracatlas", "pg:0.01:3@exp:0.7", "20", "adapted", "35.12", "0.9123", "10"]
    assert body[1][4:6] == ["34.50 ± 1.25", "n/a"]


HEADLINE = {
    "gaussian-10": {"noisy": {"psnr": 28.37, "ssim": 0.498, "n": 4}, "nlm": {"psnr": 39.04, "ssim": 0.945, "n": 4},
                    "bm3d": {"psnr": 40.47, "ssim": 0.9597, "n": 4}, "net": {"psnr": 40.61, "ssim": 0.963, "n": 4},
                    "net-x8": {"psnr": 40.71, "ssim": 0.9635, "n": 4}},
    "poisson-gaussian-a0.01-s3-exp0.7": {"noisy": {"psnr": 24.0, "ssim": 0.3, "n": 4}, "nlm": {"psnr": 33.0, "ssim": 0.9, "n": 4},
                                         "bm3d": {"psnr": 35.05, "ssim": 0.92, "n": 4}, "net": {"psnr": 34.9, "ssim": 0.93, "n": 4},
                                         "net-x8": {"psnr": 34.98, "ssim": 0.9301, "n": 4}},
}


def test_readme_results_block_from_a_headline():
    block = tables.readme_results_block(HEADLINE)
    table, _, text = block.partition("\n\n")
    headers, body = parse(table)
    assert headers == ["noise", "noisy", "NLM (true noise)", "BM3D (true noise)", "net (blind)", "network − BM3D", "net-x8 (opt-in)"]
    assert body[0] == ["Gaussian sigma 10/255", "28.37 / 0.4980", "39.04 / 0.9450", "40.47 / 0.9597", "40.61 / 0.9630",
                       "+0.14 dB / +0.0033", "**40.71** / **0.9635**"]
    assert body[1][0] == "Poisson-Gaussian a=0.01, s=3/255, exponential kernel 0.7 px"
    assert body[1][3] == "**35.05** / 0.9200" and body[1][5] == "-0.15 dB / +0.0100"
    assert "n = 4 test images" in text and "in mean PSNR at 1 of 2 levels" in text and "in mean SSIM at 2 of 2" in text
    assert "adds +0.08 to +0.10 dB" in text


def test_describe_level_names_each_noise_family():
    assert tables.describe_level("gaussian-25") == "Gaussian sigma 25/255"
    assert tables.describe_level("poisson-gaussian-a0.01-s5") == "Poisson-Gaussian a=0.01, s=5/255"
    assert tables.describe_level("gaussian-10-gauss1") == "Gaussian sigma 10/255, Gaussian kernel 1 px"
    assert tables.describe_level("not a level") == "not a level"
