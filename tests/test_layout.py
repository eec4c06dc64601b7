"""The package's shape: no import circle, arrows one way (cli -> demo/report -> computation -> base), small modules."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 400
# Lower layers never import higher ones.
LAYERS = {
    "latentmap.__main__": 5, "latentmap.cli": 5, "latentmap.demo": 4, "latentmap.training": 4, "latentmap.report": 3,
    "latentmap.evaluation": 2, "latentmap.maps": 2, "latentmap.support": 2,
    "latentmap.models": 1, "latentmap.data": 1,
    "latentmap.io": 0, "latentmap.stats": 0, "latentmap.errors": 0, "latentmap.batching": 0,
    "latentmap.device": 0, "latentmap.losses": 0, "latentmap.version": 0, "latentmap.distributed": 0,
    "latentmap.constants": 0,
}


def modules() -> dict[str, Path]:
    found = {}
    for path in [*(ROOT / "latentmap").rglob("*.py"), *(ROOT / "cli").glob("*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "cli":
            parts = ["latentmap", "cli", *parts[1:]]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every module's imports of other latentmap modules (function-level imports included)."""
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("latentmap"):
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name and t != "latentmap"}
    return graph


def layer(name: str):
    best = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len, default=None)
    return None if best is None else LAYERS[best]


def test_no_import_circle():
    graph = import_graph(modules())
    for pkg in [m for m in graph if m.count(".") == 1]:  # package __init__ files aggregate: leave them out
        graph[pkg] = set()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_imports_run_one_way():
    graph = import_graph(modules())
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)]
    assert not upward, upward


def test_every_module_is_placed_and_small():
    mods = modules()
    unplaced = [m for m in mods if m != "latentmap" and layer(m) is None]
    assert not unplaced, f"modules outside the layout: {unplaced}"
    big = {m: n for m, p in mods.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_cli_loads_no_torch_for_help():
    import subprocess
    import sys

    code = "import sys; from latentmap.cli.main import main; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", "the CLI entry point imports torch before a command runs"
