"""Layers depend only on the layers before them (STYLE.md section 2): wire <- hub, wire <- client <- consumer <-
pipelines; and inside the hub, the parts depend on the store's protocol and the coordinators, never on the ``Hub``
assembly or the storage engine."""

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
}

# Inside the hub: who may import the assembly (``hub/app.py``: ``Hub``) and the storage engine.
HUB_APP = "sluice.hub.app"
MAY_IMPORT_HUB_APP = {"hub/server.py", "cli.py"}
ENGINE = "sluice.hub.store.sqlite"
ENGINE_HOME = "hub/store/"
# Parts that must be built from the store protocol and the coordinators (#16), checked by name below.
PARTS = ["hub/console", "hub/metrics.py", "hub/metrics_text.py", "hub/api", "hub/routes.py", "hub/retention.py",
         "hub/coordinators.py", "hub/longpoll.py", "hub/waits.py", "hub/query"]


def _targets(path: Path) -> set[str]:
    """Every module ``path`` imports, as full dotted names (``from . import x`` counts as importing ``pkg.x``)."""
    tree = ast.parse(path.read_text())
    pkg = ("sluice",) + path.relative_to(SRC).with_suffix("").parts
    if path.name == "__init__.py":
        pkg = pkg[:-1] + ("__init__",)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[:-node.level])
                mod = base + ((node.module or "").split(".") if node.module else [])
            else:
                mod = (node.module or "").split(".")
            found.add(".".join(mod))
            found.update(".".join(mod + [a.name]) for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {t for t in found if t.startswith("sluice.")}


def _modules(rel: str) -> list[Path]:
    target = SRC / rel
    assert target.exists(), f"a listed layer or part does not exist: src/sluice/{rel}"
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


def test_every_listed_layer_exists() -> None:
    """A rule about a folder that is gone checks nothing: fail instead (the old ``console`` layer did this)."""
    for layer in ALLOWED:
        assert (SRC / layer).is_dir(), f"layer {layer} listed in ALLOWED has no folder src/sluice/{layer}"
    for part in PARTS:
        _modules(part)


def test_layers() -> None:
    """No module imports from a layer that comes after its own."""
    bad = []
    for layer, allowed in ALLOWED.items():
        for path in _modules(layer):
            for target in _targets(path):
                dep = target.split(".")[1]
                if dep in ALLOWED and dep not in allowed:
                    bad.append(f"{path.relative_to(SRC)} imports {target}")
    assert not bad, bad


def test_only_server_and_cli_import_the_hub_assembly() -> None:
    bad = [f"{p.relative_to(SRC)} imports {HUB_APP}" for p in SRC.rglob("*.py")
           if HUB_APP in _targets(p) and str(p.relative_to(SRC)) not in MAY_IMPORT_HUB_APP]
    assert not bad, bad


def test_only_the_store_names_its_engine() -> None:
    """Everything outside hub/store/ goes through the Store protocol (store/base.py) and open_store()."""
    bad = [f"{p.relative_to(SRC)} imports {ENGINE}" for p in SRC.rglob("*.py")
           if ENGINE in _targets(p) and not str(p.relative_to(SRC)).startswith(ENGINE_HOME)]
    assert not bad, bad


def test_console_and_metrics_use_store_and_coordinators_not_the_hub() -> None:
    """hub/console and hub/metrics (and the handlers) read the store and the coordinators: no Hub, no engine,
    and no engine internals (its lock or its dicts)."""
    bad = []
    for part in PARTS:
        for path in _modules(part):
            targets = _targets(path)
            for forbidden in (HUB_APP, "sluice.hub.server", ENGINE):
                if forbidden in targets:
                    bad.append(f"{path.relative_to(SRC)} imports {forbidden}")
            text = path.read_text()
            for internal in ("store.lock", "store.logstores", "store.projects"):
                if internal in text:
                    bad.append(f"{path.relative_to(SRC)} uses {internal}")
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
