"""Summary tables: printed with rich for the terminal, written as Markdown for the report."""

from __future__ import annotations

from typing import Iterable, Sequence


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
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
