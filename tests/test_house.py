"""The package's shape: production never imports the test fixtures; top-level subpackages import each other
without cycles (counting imports inside functions too)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ocrvl_ray"


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (``from a import b`` counts as ``a.b`` and ``a``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _unit(module: str) -> str | None:
    """``ocrvl_ray.layout.compose.page`` -> ``layout``; ``ocrvl_ray.end_to_end`` -> ``end_to_end``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "ocrvl_ray" and len(parts) > 1 else None


def _units() -> dict[str, set[str]]:
    """Top-level subpackage/module -> the top-level units it imports (existing ones only)."""
    names = {p.stem for p in PKG.iterdir() if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        src = path.relative_to(PKG).parts[0].removesuffix(".py")
        deps = {_unit(m) for m in _imports(path)} & names
        graph.setdefault(src, set()).update(deps - {src})
    return graph


def test_only_tests_and_benches_import_the_testing_package():
    production = [p for p in list(PKG.rglob("*.py")) + list((ROOT / "jobs").glob("*.py"))
                  if "testing" not in p.relative_to(ROOT).parts]
    offenders = [str(p.relative_to(ROOT)) for p in production
                 if any(m == "ocrvl_ray.testing" or m.startswith("ocrvl_ray.testing.") for m in _imports(p))]
    assert len(production) > 50 and offenders == []


def test_no_import_cycles_between_top_level_subpackages():
    graph = _units()
    assert {"core", "lmdb", "ingest", "layout", "train", "export", "report", "cli", "demo", "testing"} <= set(graph)
    assert graph["core"] == set(), graph["core"]          # core imports nothing else of ocrvl_ray
    assert graph["lmdb"] == {"core"}, graph["lmdb"]      # the on-disk contract stands on core alone

    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_cycle_finder_sees_lazy_imports(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from ocrvl_ray.layout.compose import page\n    import ocrvl_ray.core.errors\n")
    assert {_unit(m) for m in _imports(mod)} == {"layout", "core"}
