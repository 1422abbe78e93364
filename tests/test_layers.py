"""The import graph points one way: cli -> serve -> routers / trainers -> harness -> models.

Read from the source with ast (nothing is imported), so a lazy import inside a function counts
as much as one at the top of a module: an upward arrow anywhere is what makes a cycle later.
tourney.errors and tourney.schema sit below every layer and may be imported from anywhere.
"""
from __future__ import annotations

import ast
from pathlib import Path

import tourney

ROOT = Path(tourney.__file__).parent
# Higher imports lower; equal ranks (routers, trainers) stay independent of each other.
RANK = {"models": 0, "harness": 1, "routers": 2, "trainers": 2, "serve": 3, "cli": 4}


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            # Relative imports would hide a layer crossing from this check.
            names.append(f"<relative import in {path.name}>")
    return names


def _arrows() -> list[tuple[str, str, str]]:
    arrows = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        layer = rel.parts[0] if len(rel.parts) > 1 else None
        for name in _imports(path):
            arrows.append((str(rel), layer or "", name))
    return arrows


def test_every_layer_exists():
    assert set(RANK) <= {p.name for p in ROOT.iterdir() if p.is_dir()}


def _upward() -> list[tuple[str, str]]:
    upward = []
    for rel, layer, name in _arrows():
        if name.startswith("<relative"):
            upward.append((rel, name))
            continue
        parts = name.split(".")
        if parts[0] != "tourney" or len(parts) < 2 or parts[1] not in RANK or layer not in RANK:
            continue
        target = parts[1]
        if target != layer and RANK[target] >= RANK[layer]:
            upward.append((rel, name))
    return upward


def test_imports_point_down():
    assert _upward() == []


def test_base_modules_import_no_layer():
    for base in ("errors.py", "schema.py"):
        names = _imports(ROOT / base)
        assert [n for n in names if n.split(".")[:2][-1] in RANK and n.startswith("tourney")] == []


def test_check_catches_an_upward_import(tmp_path, monkeypatch):
    # The check itself must be able to fail: a harness module importing the CLI is caught.
    fake = tmp_path / "tourney"
    (fake / "harness").mkdir(parents=True)
    for layer in RANK:
        (fake / layer).mkdir(exist_ok=True)
    (fake / "harness" / "bad.py").write_text("def f():\n    from tourney.cli import main\n")
    (fake / "models" / "ok.py").write_text("from tourney.errors import DataError\n")
    monkeypatch.setitem(globals(), "ROOT", fake)
    assert _upward() == [("harness/bad.py", "tourney.cli")]
