"""Summary tables: printed with rich for the terminal, written as Markdown for the report.

Each Markdown table of the report is built by its own function from one named object (the
dataclasses below), never from lists whose positions carry a meaning. The numbers come
from :mod:`~xraydenoise.evaluation.statistics`; this module only formats them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .statistics import Paired, Summary

#: What a cell shows for a number that is not finite (the PSNR of an output equal to the clean image).
NOT_FINITE = "—"


def print_summary(summary: list[dict], console, *, title: str = "mean PSNR (dB) / SSIM per method and noise level") -> None:
    """A table with one row per method and a PSNR/SSIM column pair per noise level."""
    from rich.table import Table

    levels = list(dict.fromkeys(row["level"] for row in summary))
    methods = list(dict.fromkeys(row["method"] for row in summary))
    cell = {(row["method"], row["level"]): row for row in summary}
    table = Table(title=title)
    table.add_column("method")
    for level in levels:
        table.add_column(f"{level}\nPSNR", justify="right")
        table.add_column("SSIM", justify="right")
    for method in methods:
        values = []
        for level in levels:
            row = cell.get((method, level))
            values += [f"{row['psnr_mean']:.2f}", f"{row['ssim_mean']:.4f}"] if row else ["", ""]
        table.add_row(method, *values)
    n = max((row["n"] for row in summary), default=0)
    table.caption = f"{n} images per cell"
    console.print(table)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence], *, align: Sequence[str] | None = None) -> str:
    headers = list(headers)
    align = list(align) if align else ["l"] + ["r"] * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def fmt_mean_std(mean: float, std: float, digits: int) -> str:
    """``12.35 ± 0.50``; :data:`NOT_FINITE` for an infinite or undefined mean."""
    if not math.isfinite(mean):
        return NOT_FINITE
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_p(p: float) -> str:
    """A p value: 3 decimals, scientific notation below 0.001."""
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def fmt_psnr_ssim(cell: Summary) -> str:
    """Table 3's cell: ``PSNR mean ± std / SSIM mean``, the PSNR part :data:`NOT_FINITE` when infinite."""
    return f"{fmt_mean_std(cell.psnr_mean, cell.psnr_std, 2)} / {cell.ssim_mean:.4f}"


# --------------------------------------------------------------------------- grouped (Tables 1, 2, 6-10)


@dataclass(frozen=True)
class GroupedTable:
    """One row per (group, method): Tables 1, 2, 6, 7, 8, 9 and 10.

    ``cells[(group, method)]`` are the summaries; ``by`` names the grouping column (its
    header); ``groups`` the group order (empty or None: sorted); pairs without a cell are left out.
    """

    by: str
    methods: Sequence[str]
    cells: Mapping[tuple[str, str], Summary]
    groups: Sequence[str] | None = None


def grouped_table(table: GroupedTable) -> str:
    groups = list(table.groups) if table.groups else sorted(dict.fromkeys(g for g, _ in table.cells))
    lines = []
    for group in groups:
        for method in table.methods:
            cell = table.cells.get((group, method))
            if cell:
                lines.append([group or "(blank)", method, cell.n, fmt_mean_std(cell.psnr_mean, cell.psnr_std, 2),
                              fmt_mean_std(cell.ssim_mean, cell.ssim_std, 4)])
    return markdown_table([table.by, "method", "n", "PSNR (dB)", "SSIM"], lines, align=["l", "l", "r", "r", "r"])


# --------------------------------------------------------------------------- Table 3


@dataclass(frozen=True)
class LevelTable:
    """Table 3: one row per method, one column per noise level; ``cells[(level, method)]``.

    ``n`` is the number of images shown in every column header.
    """

    methods: Sequence[str]
    levels: Sequence[str]
    cells: Mapping[tuple[str, str], Summary]
    n: int


def level_table(table: LevelTable) -> str:
    lines = []
    for method in table.methods:
        cells = [method]
        for level in table.levels:
            cell = table.cells.get((level, method))
            cells.append(fmt_psnr_ssim(cell) if cell else "")
        lines.append(cells)
    return markdown_table(["method"] + [f"{lv} (n={table.n})" for lv in table.levels], lines, align=["l"] + ["r"] * len(table.levels))


# --------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class PairedRow:
    """One line of a paired-test table: ``paired`` at a noisy level, or, at a level where no
    noise is added, ``identity``: the method's output scored against its input (no test)."""

    level: str
    paired: Paired | None = None
    identity: Summary | None = None


PAIRED_HEADERS = ["noise", "n", "ΔPSNR (dB)", "PSNR win rate", "Wilcoxon p", "ΔSSIM", "SSIM win rate", "Wilcoxon p"]


def paired_table(rows: Sequence[PairedRow]) -> str:
    """Mean difference (3 decimals in dB: targets such as "0.5 dB above BM3D" must not be met by
    rounding), win rate and Wilcoxon p of PSNR and SSIM; rows with nothing to show are left out."""
    lines = []
    for row in rows:
        p = row.paired
        if p:
            lines.append([row.level, p.n, f"{p.psnr_diff:+.3f}", f"{100 * p.psnr_win:.0f}%", fmt_p(p.psnr_p),
                          f"{p.ssim_diff:+.4f}", f"{100 * p.ssim_win:.0f}%", fmt_p(p.ssim_p)])
        elif row.identity:
            c = row.identity
            psnr = NOT_FINITE if not math.isfinite(c.psnr_mean) else f"{c.psnr_mean:.2f}"
            lines.append([f"{row.level} (vs the identity)", c.n, f"PSNR vs input {psnr}", NOT_FINITE, NOT_FINITE,
                          f"SSIM vs input {c.ssim_mean:.4f}", NOT_FINITE, NOT_FINITE])
    return markdown_table(PAIRED_HEADERS, lines)


# --------------------------------------------------------------------------- Table 4


@dataclass(frozen=True)
class ArchitectureRow:
    """One network of Table 4: what its model card says, and its summary per level."""

    label: str
    family: str
    parameters: int
    steps: int | str
    cells: Mapping[str, Summary]


@dataclass(frozen=True)
class ArchitectureTable:
    levels: Sequence[str]
    rows: Sequence[ArchitectureRow]
    #: what the second column says of each network (the detector-noise designs: what it is told)
    kind: str = "family"


def architecture_table(table: ArchitectureTable) -> str:
    lines = []
    for row in table.rows:
        cells = [row.label, row.family, f"{row.parameters / 1e6:.2f} M", row.steps]
        for level in table.levels:
            cell = row.cells.get(level)
            cells.append(f"{cell.psnr_mean:.2f} / {cell.ssim_mean:.4f}" if cell else "")
        lines.append(cells)
    return markdown_table(["model", table.kind, "parameters", "steps"] + list(table.levels), lines,
                          align=["l", "l", "r", "r"] + ["r"] * len(table.levels))


# --------------------------------------------------------------------------- Table 5


@dataclass(frozen=True)
class CostRow:
    """One method of Table 5. ``parameters`` None: not a network (the training cells show "-");
    ``same_as``: a variant of that network (its parameters and training)."""

    method: str
    inference_seconds: float
    parameters: int | None = None
    training_steps: int | str = "-"
    training_seconds: float | None = None
    trained_on: str = "-"
    same_as: str | None = None


@dataclass(frozen=True)
class CostTable:
    timing_size: int
    rows: Sequence[CostRow]


def cost_table(table: CostTable) -> str:
    lines = []
    for row in table.rows:
        if row.same_as:
            parameters = f"(as {row.same_as})"
        else:
            parameters = "-" if row.parameters is None else f"{row.parameters / 1e6:.2f} M"
        minutes = "-" if row.training_seconds is None else f"{row.training_seconds / 60:.1f} min"
        lines.append([row.method, parameters, row.training_steps, minutes, row.trained_on, f"{row.inference_seconds:.2f} s"])
    size = table.timing_size
    return markdown_table(["method", "parameters", "training steps", "training time", "trained on", f"inference per {size}x{size} image"], lines)


# --------------------------------------------------------------------------- detector noise


@dataclass(frozen=True)
class DetectorColumn:
    """A column of the detector-noise table: the method's row label and what its header says."""

    method: str
    heading: str


@dataclass(frozen=True)
class DetectorTable:
    """One row per correlated / signal-dependent noise level, one column per method;
    ``cells[(level, method)]``; ``n`` images per cell."""

    levels: Sequence[str]
    columns: Sequence[DetectorColumn]
    cells: Mapping[tuple[str, str], Summary]
    n: int


def detector_table(table: DetectorTable) -> str:
    lines = []
    for level in table.levels:
        cells = [level]
        for column in table.columns:
            cell = table.cells.get((level, column.method))
            cells.append(f"{fmt_mean_std(cell.psnr_mean, cell.psnr_std, 2)} / {fmt_mean_std(cell.ssim_mean, cell.ssim_std, 4)}" if cell else "")
        lines.append(cells)
    return markdown_table([f"noise (n={table.n})"] + [c.heading for c in table.columns], lines)


# --------------------------------------------------------------------------- imaging physics


@dataclass(frozen=True)
class PhysicsRow:
    """What one method does to resolution (MTF of a slanted edge) and noise texture (the NPS of
    what it leaves, over the NPS of the noise it was given) at a few frequencies (cycles/pixel).
    ``nps_ratio`` None: the noisy input itself (the reference)."""

    noise: str
    method: str
    mtf: Mapping[float, float]
    nps_ratio: Mapping[float, float] | None


@dataclass(frozen=True)
class PhysicsTable:
    mtf_frequencies: Sequence[float]
    nps_frequencies: Sequence[float]
    rows: Sequence[PhysicsRow]


def physics_table(table: PhysicsTable) -> str:
    headers = ["noise", "method"]
    headers += [f"MTF at {f:g}" for f in table.mtf_frequencies]
    headers += [f"NPS out / in at {f:g}" for f in table.nps_frequencies]
    lines = []
    for row in table.rows:
        cells = [row.noise, row.method] + [f"{row.mtf[f]:.3f}" for f in table.mtf_frequencies]
        cells += [f"{row.nps_ratio[f]:.3g}" if row.nps_ratio is not None else "1 (reference)" for f in table.nps_frequencies]
        lines.append(cells)
    return markdown_table(headers, lines, align=["l", "l"] + ["r"] * (len(headers) - 2))


# --------------------------------------------------------------------------- adaptation


@dataclass(frozen=True)
class AdaptationRow:
    institution: str
    noise: str
    images: Any
    method: str
    psnr: Any
    ssim: Any
    n: Any


@dataclass(frozen=True)
class AdaptationTable:
    """``data/adapt.json`` of the adapt benchmark: how it was run and one row per result."""

    command: str
    machine: str
    minutes: float | None
    rows: Sequence[AdaptationRow] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: Mapping) -> AdaptationTable:
        keys = ("institution", "noise", "images", "method", "psnr", "ssim", "n")
        rows = [AdaptationRow(**{k: r.get(k, "") for k in keys}) for r in raw.get("rows", [])]
        minutes = raw.get("minutes")
        return cls(str(raw.get("command", "")), str(raw.get("machine", "")), minutes if isinstance(minutes, (int, float)) else None, rows)


def _number(value: Any, digits: int) -> str:
    """A score that may be a number, ``{"mean", "std"}`` or anything else (shown as it is)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}" if math.isfinite(value) else NOT_FINITE
    if isinstance(value, Mapping) and isinstance(value.get("mean"), (int, float)):
        std = value.get("std")
        return fmt_mean_std(value["mean"], std, digits) if isinstance(std, (int, float)) else f"{value['mean']:.{digits}f}"
    return str(value)


def adaptation_table(table: AdaptationTable) -> str:
    lines = [[r.institution, r.noise, r.images, r.method, _number(r.psnr, 2), _number(r.ssim, 4), r.n] for r in table.rows]
    return markdown_table(["institution", "noise", "images", "method", "PSNR (dB)", "SSIM", "n"], lines,
                          align=["l", "l", "r", "l", "r", "r", "r"])


# --------------------------------------------------------------------------- README results block


def describe_level(label: str) -> str:
    """A noise label in words: ``gaussian-25`` -> ``Gaussian sigma 25/255``."""
    from ..noise import parse_noise

    try:
        model = parse_noise(label)
    except Exception:  # noqa: BLE001 - a label this version cannot read is shown as it is
        return label
    a = getattr(model, "a", 0.0)
    s: Any = getattr(model, "s", None)
    if s is None:
        s = getattr(model, "sigma", 0.0)
    level = f"Poisson-Gaussian a={a:g}, s={s * 255:g}/255" if a > 0 else f"Gaussian sigma {s * 255:g}/255"
    kernel = getattr(model, "kernel", None)
    if kernel is not None and not getattr(kernel, "is_white", False):
        width = getattr(kernel, "width", None)
        name = {"gauss": "Gaussian", "exp": "exponential"}.get(getattr(kernel, "name", ""), "measured")
        level += f", {name} kernel" + (f" {width:g} px" if width is not None else "")
    return level


def _in_units(value: float, scale: int) -> int:
    """A rounded mean as an integer number of its last decimal (``scale`` 100: hundredths)."""
    return round(value * scale)


def _shipped_of(methods: Iterable[str]) -> str:
    """The shipped network in a headline: the method whose ``-x8`` self-ensemble is there too."""
    methods = list(methods)
    for method in methods:
        if method.endswith("-x8") and method[:-3] in methods:
            return method[:-3]
    from ..weights import DEFAULT_MODEL

    return DEFAULT_MODEL


def _readme_cell(cell: Mapping | None, best: Mapping[str, float | None]) -> str:
    """``PSNR / SSIM`` of one headline cell, each in bold when it is the row's ``best``."""
    if cell is None:
        return ""
    psnr, ssim = f"{cell['psnr']:.2f}", f"{cell['ssim']:.4f}"
    if cell["psnr"] == best.get("psnr"):
        psnr = f"**{psnr}**"
    if cell["ssim"] == best.get("ssim"):
        ssim = f"**{ssim}**"
    return f"{psnr} / {ssim}"


def readme_results_block(headline: Mapping[str, Mapping[str, Mapping]]) -> str:
    """README's results table, from ``data/headline.json``: per noise level the noisy input, NLM
    and BM3D (told the true noise), the shipped network (blind), its difference from BM3D and
    its opt-in self-ensemble; mean PSNR (dB) / SSIM, the best of each row in bold."""
    levels = list(headline)
    methods = dict.fromkeys(m for level in levels for m in headline[level])
    shipped = _shipped_of(methods)
    ensemble = f"{shipped}-x8" if f"{shipped}-x8" in methods else None
    shown = ["nlm", "bm3d", shipped] + ([ensemble] if ensemble else [])
    headers = ["noise", "noisy", "NLM (true noise)", "BM3D (true noise)", f"{shipped} (blind)", "network − BM3D"]
    headers += [f"{ensemble} (opt-in)"] if ensemble else []
    lines, above_psnr, above_ssim, gains = [], 0, 0, []
    ns: set[int] = set()
    for level in levels:
        cells = headline[level]
        best = {metric: max((cells[m][metric] for m in shown if m in cells), default=None) for metric in ("psnr", "ssim")}
        ns.update(c["n"] for m, c in cells.items() if m in shown or m == "noisy")

        net, ref = cells.get(shipped), cells.get("bm3d")
        if net and ref:
            # differences of the rounded means in integer units of their last decimal (no float rounding)
            dp = _in_units(net["psnr"], 100) - _in_units(ref["psnr"], 100)
            ds = _in_units(net["ssim"], 10_000) - _in_units(ref["ssim"], 10_000)
            delta = f"{dp / 100:+.2f} dB / {ds / 10_000:+.4f}"
            above_psnr += dp > 0
            above_ssim += ds > 0
        else:
            delta = ""
        if ensemble and net and ensemble in cells:
            gains.append(_in_units(cells[ensemble]["psnr"], 100) - _in_units(net["psnr"], 100))
        lines.append([describe_level(level), _readme_cell(cells.get("noisy"), {})]
                     + [_readme_cell(cells.get(m), best) for m in ("nlm", "bm3d", shipped)] + [delta]
                     + ([_readme_cell(cells.get(ensemble), best)] if ensemble else []))
    out = [markdown_table(headers, lines, align=["l"] + ["r"] * (len(headers) - 1)), ""]
    n = f"{min(ns)}" if len(ns) == 1 else f"{min(ns, default=0)}-{max(ns, default=0)}"
    text = (f"Mean PSNR (dB) / SSIM over n = {n} test images per cell; the best of each row in bold. "
            f"The blind network is above BM3D told the true noise in mean PSNR at {above_psnr} of {len(levels)} levels "
            f"and in mean SSIM at {above_ssim} of {len(levels)}")
    if gains:
        low, high = min(gains) / 100, max(gains) / 100
        span = f"{low:+.2f} dB" if low == high else f"{low:+.2f} to {high:+.2f} dB"
        text += f"; the self-ensemble `{ensemble}` adds {span} to the single pass, for 8x the time"
    out.append(text + ". Per-image paired tests (win rate, Wilcoxon p) are in Table 3 of "
               "[docs/results/README.md](docs/results/README.md).")
    return "\n".join(out)
