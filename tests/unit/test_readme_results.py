"""README's results block is the one `xraydenoise report` renders from docs/results/data/headline.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xraydenoise.evaluation import report, tables

ROOT = Path(__file__).resolve().parents[2]
HEADLINE = ROOT / "docs" / "results" / "data" / "headline.json"
README = ROOT / "README.md"


def test_readme_results_block_is_rendered_from_the_committed_headline():
    block = report.readme_block(README.read_text())
    assert block is not None, f"README.md has no {report.README_START} ... {report.README_END} block"
    expected = tables.readme_results_block(json.loads(HEADLINE.read_text()))
    assert block == expected, "README's results are not those of docs/results/data/headline.json: rerun `xraydenoise report`"


def test_readme_block_is_replaced_between_the_markers_only(tmp_path):
    text = f"# Title\n\nbefore\n\n{report.README_START}\nold numbers\n{report.README_END}\n\nafter\n"
    new = report.with_readme_block(text, "| new |")
    assert new == f"# Title\n\nbefore\n\n{report.README_START}\n| new |\n{report.README_END}\n\nafter\n"
    assert report.readme_block(new) == "| new |"
    assert report.readme_block("no markers") is None
    path = tmp_path / "README.md"
    path.write_text(text)
    headline = json.loads(HEADLINE.read_text())
    assert report.update_readme(headline, path)
    assert report.readme_block(path.read_text()) == tables.readme_results_block(headline)
    assert path.read_text().startswith("# Title\n\nbefore\n\n") and path.read_text().endswith("\n\nafter\n")
    (tmp_path / "plain.md").write_text("no markers\n")
    assert not report.update_readme(headline, tmp_path / "plain.md")
    with pytest.raises(Exception, match="markers"):
        report.with_readme_block("no markers", "x")
