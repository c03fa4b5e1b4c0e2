"""Layers depend only on the layers before them (STYLE.md section 2): wire <- hub, wire <- client <- consumer."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "sluice"

ALLOWED = {
    "wire": {"wire"},
    "hub": {"wire", "hub"},
    "client": {"wire", "client"},
    "consumer": {"wire", "client", "consumer"},
    "pipelines": {"wire", "client", "consumer", "pipelines"},
    "console": {"wire", "hub", "console"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    pkg = path.relative_to(SRC).parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[:-node.level]) if node.level <= len(pkg) - 1 else []
                mod = (node.module or "").split(".") if node.module else []
                target = base + mod
                if target:
                    found.add(target[0])
                else:  # "from .. import x": the names are the modules
                    found.update(a.name for a in node.names)
            elif node.module and node.module.startswith("sluice."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("sluice."):
                    found.add(a.name.split(".")[1])
    return found


def test_layers() -> None:
    """No module imports from a layer that comes after its own."""
    bad = []
    for layer, allowed in ALLOWED.items():
        for path in (SRC / layer).rglob("*.py") if (SRC / layer).exists() else []:
            for dep in _imports(path):
                if dep in ALLOWED and dep not in allowed:
                    bad.append(f"{path.relative_to(SRC)} imports {dep}")
    assert not bad, bad


def test_wire_has_no_io() -> None:
    """wire/ imports no sockets, files, asyncio or threads."""
    forbidden = {"socket", "asyncio", "threading", "aiohttp", "sqlite3", "subprocess"}
    for path in (SRC / "wire").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for n in names:
                assert n.split(".")[0] not in forbidden, f"{path.name} imports {n}"
