"""The dependency rule, checked on the source: io, noise, models <- denoisers/inference <- training, evaluation <- cli.

Imports are read from every module's syntax tree, those inside functions too (a lazy import
still ties two packages together), so a violation fails here before it shows as an import cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "xraydenoise"

#: What each part may not import (by top-level subpackage or module of xraydenoise).
FORBIDDEN = {
    "io": {"training", "evaluation", "cli", "inference", "denoisers", "batch", "models"},
    "noise": {"training", "evaluation", "cli", "inference", "denoisers", "batch"},
    "models": {"training", "evaluation", "cli", "inference", "denoisers", "batch"},
    "data": {"training", "evaluation", "cli"},
    "inference": {"training", "evaluation", "cli"},
    "denoisers": {"training", "evaluation", "cli"},
    "batch": {"training", "evaluation", "cli"},
    "export": {"training", "evaluation", "cli"},
    "weights": {"training", "evaluation", "cli"},
    "ray_engine": {"training", "evaluation", "cli"},
    "serve": {"training", "evaluation", "cli"},
    "viewer": {"training", "evaluation", "cli"},
    "training": {"evaluation", "cli"},
    "evaluation": {"training", "cli"},
}


def imported_parts(path: Path) -> set[str]:
    """The xraydenoise subpackages/modules that ``path`` imports, anywhere in the file."""
    relative = path.relative_to(PACKAGE)
    depth = len(relative.parts) - 1  # folders below the package
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1  # "from ." stays in this folder
                base = list(relative.parts[:depth])[: max(0, depth - up)] if up <= depth else []
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from .. import x" at the package root: x is a part
                    parts.update(alias.name for alias in node.names)
                else:
                    parts.add(target[0])
            elif node.module and node.module.startswith("xraydenoise."):
                parts.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            parts.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("xraydenoise."))
    return parts


def owner(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path):
    part = owner(path)
    forbidden = FORBIDDEN.get(part, set())
    wrong = sorted((imported_parts(path) - {part}) & forbidden)
    assert not wrong, f"{path.relative_to(PACKAGE)} ({part}) imports {wrong}"


def test_the_rule_is_read_from_relative_and_lazy_imports(tmp_path):
    assert imported_parts(PACKAGE / "training" / "datasets.py") >= {"data", "io"}
    assert "weights" in imported_parts(PACKAGE / "training" / "ship.py")
