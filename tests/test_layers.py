"""Imports point one way: each package of dstune imports only the packages below it.

A step strategy (dstune.steps) sits on the plan layer; it names its cost function and profile
worker by import path, so those upper layers are never imported from below (even inside a function).
"""

from __future__ import annotations

import ast
from pathlib import Path

import dstune

LAYERS = (
    "errors",
    "catalog",
    "plan",
    "steps",
    "record",
    "costmodel",
    "doctor",
    "calibration",
    "profile",
    "search",
    "export",
    "report",
    "acceptance",  # the GPU acceptance run: orchestrates profile and calibration stages
    "frameworks",  # a target framework is one folder over the shared machinery above: its knobs, options,
    # cost terms, search, export and renderers; the CLI above resolves --framework to one of them
    "cli",
    "__main__",
)
ROOT = Path(dstune.__file__).parent


def _package(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imported_packages(path: Path) -> set[str]:
    return _imports_in(path.read_text(encoding="utf-8"), path.relative_to(ROOT).parts[:-1])


def _imports_in(source: str, inside: tuple[str, ...]) -> set[str]:
    """Top-level dstune packages a module in package `inside` imports, relative or absolute, anywhere."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "dstune":
                    continue
                target = parts[1:]
            else:
                base = list(inside[: len(inside) - (node.level - 1)]) if node.level > 1 else list(inside)
                target = base + (node.module.split(".") if node.module else [])
                if not target:
                    target = [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            target = next((a.name.split(".")[1:] for a in node.names if a.name.startswith("dstune.")), [])
        else:
            continue
        if target:
            found.add(target[0])
    return found


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in ROOT.rglob("*.py")} - {"__init__"}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        here = _package(path)
        if here == "__init__":
            continue
        for target in _imported_packages(path) - {here, "__version__", "__init__"}:
            if LAYERS.index(target) >= LAYERS.index(here):
                wrong.append(f"{path.relative_to(ROOT)} imports dstune.{target}")
    assert not wrong, wrong


def test_the_check_sees_imports_inside_functions() -> None:
    source = "import numpy\nfrom . import _job\n\ndef cost():\n    from ..costmodel import estimate\n"
    assert _imports_in(source, ("plan",)) == {"plan", "costmodel"}
    assert _imports_in("import dstune.search._grid\nfrom dstune.profile import x\n", ("steps",)) == {
        "search",
        "profile",
    }
