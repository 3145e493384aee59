"""The dependency direction of DESIGN.md, checked on every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cache", "crawler", "dedup")
FORBIDDEN = {
    "cache": {"crawler", "dedup", "fixtures", "tests", "bench"},
    "crawler": {"dedup", "fixtures", "tests", "bench"},
    "dedup": {"crawler", "fixtures", "tests", "bench"},
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules() -> list[tuple[str, Path]]:
    return [(pkg, p) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), modules(), ids=lambda v: str(v).rsplit("/work/main/", 1)[-1])
def test_imports_point_one_way(package: str, path: Path) -> None:
    for name in imports_of(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN[package], f"{path.relative_to(ROOT)} imports {name}"
        if top in PACKAGES and top != package:
            parts = name.split(".")
            assert not any(p.startswith("_") for p in parts), f"{path} imports private {name}"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_is_this_projects(package: str) -> None:
    module = __import__(package)
    assert Path(module.__file__).resolve().parent == ROOT / package
