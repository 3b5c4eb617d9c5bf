"""rig's stages import only the stages below them, and no module imports itself in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

RIG = Path(__file__).resolve().parent.parent / "rig"

# A stage, and what rank it has: a module may import its own stage and lower ranks.
BASE = {"errors", "paths", "progress", "proc", "hostfacts", "tools", "stopsignals"}
RANKS = {"base": 0, "builder": 1, "checks": 2, "guest": 2, "scenarios": 3, "qdev": 3,
         "results": 4, "execution": 5, "fuzz": 6, "bench": 6, "doctor": 6, "cli": 7, "__main__": 8}


def module_name(path: Path) -> str:
    parts = path.relative_to(RIG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> str:
    first = module.split(".")[1] if "." in module else ""
    return "base" if first in BASE else first


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rig" or node.module.startswith("rig."):
                pkg_dir = RIG.parent.joinpath(*node.module.split("."))
                for alias in node.names:
                    sub = pkg_dir / f"{alias.name}.py"
                    sub_pkg = pkg_dir / alias.name / "__init__.py"
                    out.add(f"{node.module}.{alias.name}" if sub.is_file() or sub_pkg.is_file()
                            else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("rig.")}
    return out


def graph() -> dict[str, set[str]]:
    g = {module_name(p): imports(p) for p in RIG.rglob("*.py")}
    return {m: {d for d in deps if d != m and d != "rig"} for m, deps in g.items()}


def test_every_module_belongs_to_a_known_stage() -> None:
    unknown = sorted(m for m in graph() if m != "rig" and stage(m) not in RANKS)
    assert unknown == [], "add them to a stage package or to RANKS"


def test_no_module_imports_a_higher_or_a_sibling_stage() -> None:
    bad = []
    for mod, deps in graph().items():
        if mod == "rig":
            continue
        for dep in deps:
            a, b = stage(mod), stage(dep)
            if a != b and RANKS[b] >= RANKS[a]:
                bad.append(f"{mod} ({a}) imports {dep} ({b})")
    assert bad == []


def test_no_import_cycle() -> None:
    g = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append([*path[path.index(d):], d] if d in path else [m, d])
            elif d not in state:
                visit(d, [*path, d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_no_lazy_import_breaks_a_circle() -> None:
    """Imports inside functions hide circles from readers; the rig has none."""
    lazy = []
    for p in RIG.rglob("*.py"):
        for fn in ast.walk(ast.parse(p.read_text())):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rig"):
                        lazy.append(f"{module_name(p)}.{fn.name}")
    assert lazy == []


def test_rig_boot_and_rig_bench_take_their_guests_from_the_guest_stage() -> None:
    """`rig boot` (rig.cli.guest) imports neither the execution nor the results
    stage; `rig bench` runs the matrix through the execution stage and imports
    nothing from the results stage."""
    g = graph()
    assert {d for d in g["rig.cli.guest"] if stage(d) in ("execution", "results")} == set()
    assert {d for d in g["rig.bench"] if stage(d) == "results"} == set()
