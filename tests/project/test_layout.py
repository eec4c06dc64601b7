"""The package's shape: no import circle, arrows one way (cli -> demo/report -> computation -> base), small modules;
and tests/ mirrors it (the tests of latentmap/<pkg>/<mod>.py in tests/<pkg>/test_<mod>.py)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
# Lower layers never import higher ones: cli -> demo/training -> report -> evaluation -> maps/support
# -> models/data -> io/stats. The package root (its lazy public names reach every layer) sits with the CLI.
LAYERS = {
    "latentmap": 6, "latentmap.__main__": 6, "latentmap.cli": 6, "latentmap.demo": 5, "latentmap.training": 5,
    "latentmap.report": 4, "latentmap.evaluation": 3, "latentmap.maps": 2, "latentmap.support": 2,
    "latentmap.models": 1, "latentmap.data": 1,
    "latentmap.io": 0, "latentmap.stats": 0, "latentmap.errors": 0, "latentmap.batching": 0,
    "latentmap.device": 0, "latentmap.losses": 0, "latentmap.version": 0, "latentmap.distributed": 0,
    "latentmap.resources": 0,
    "latentmap.constants": 0,
}
# Layers side by side that never import each other.
APART = [("latentmap.maps", "latentmap.support")]


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
    """Every module's imports of other latentmap modules (function-level imports included).

    ``from latentmap import x`` is an import of the module ``latentmap.x`` when there is one, else of
    the package root; ``import latentmap`` is an import of the root."""
    graph = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("latentmap"):
                submodules = [f"{node.module}.{a.name}" for a in node.names]
                targets = [m for m in submodules if m in mods]
                if len(targets) < len(submodules) or node.module != "latentmap":
                    targets.append(node.module)  # a name defined in the module itself
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def top(name: str):
    """The placed package or module ``name`` belongs to."""
    return max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len, default=None)


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


def test_the_package_root_is_imported_by_the_cli_alone():
    graph = import_graph(modules())
    root_users = sorted(a for a, targets in graph.items() if "latentmap" in targets)
    assert all(top(a) in ("latentmap.cli", "latentmap.__main__") for a in root_users), root_users


def test_side_by_side_layers_never_import_each_other():
    graph = import_graph(modules())
    across = [f"{a} -> {b}" for a, targets in graph.items() for b in targets
              if (top(a), top(b)) in APART or (top(b), top(a)) in APART]
    assert not across, across


def test_the_strict_graph_sees_what_the_loose_one_missed(tmp_path):
    """The checks above would catch each import that once ran against the layers."""
    mods = modules()
    cases = {"latentmap.models.shipped": "import latentmap\n",
             "latentmap.io.atomic": "from latentmap import __version__\n",
             "latentmap.maps.fitting": "from latentmap.support.build import SupportSet\n",
             "latentmap.support.build": "from latentmap.maps.linear import LinearMap\n",
             "latentmap.support.sectors": "from latentmap.evaluation.metrics import per_image_mse\n"}
    for i, (name, line) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.py"
        path.write_text(line)
        found = import_graph({**mods, name: path})[name]
        upward = [b for b in found if layer(b) > layer(name)]
        across = [b for b in found if (top(name), top(b)) in APART or (top(b), top(name)) in APART]
        assert upward or across, (name, line)


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


# --------------------------------------------------------------------------- the tests mirror the package

# Folders of tests/ that mirror no package: the shared helpers and the project-wide checks.
TEST_FOLDERS_APART = {"helpers", "project"}
# Test files that check several modules of one package and are named for what they check, not for one module.
DESCRIPTIVE_TEST_FILES = {
    "tests/cli/test_commands.py", "tests/cli/test_map_estimators.py",
    "tests/evaluation/test_benchmarks.py", "tests/evaluation/test_reference.py",
    "tests/maps/test_contract.py", "tests/maps/test_distributed.py", "tests/maps/test_estimators.py",
    "tests/maps/test_reference.py",
    "tests/models/test_adapters.py", "tests/models/test_external.py",
    "tests/report/test_bench_pages.py", "tests/report/test_pages.py", "tests/report/test_words.py",
    "tests/support/test_reference.py",
}


def module_under_test(rel: Path) -> Path:
    """The module ``tests/<pkg>/test_<mod>.py`` tests: ``latentmap/<pkg>/<mod>.py`` (``cli/<mod>.py`` for
    tests/cli/), and ``latentmap/<mod>.py`` for a file at the top of tests/."""
    parts = rel.parts
    name = parts[-1].removeprefix("test_")
    if len(parts) == 1:
        return ROOT / "latentmap" / name
    base = ROOT / "cli" if parts[0] == "cli" else ROOT / "latentmap" / parts[0]
    return base.joinpath(*parts[1:-1], name)


def mirror_offenders(tests_root: Path) -> list[str]:
    offenders = []
    for path in sorted(tests_root.rglob("*.py")):
        rel = path.relative_to(tests_root)
        if rel.parts[0] in TEST_FOLDERS_APART or "__pycache__" in rel.parts:
            continue
        if path.name in ("__init__.py", "conftest.py"):
            continue
        key = "tests/" + rel.as_posix()
        if not path.name.startswith("test_"):
            offenders.append(f"{key}: a helper outside tests/helpers/")
        elif key in DESCRIPTIVE_TEST_FILES:
            if len(rel.parts) != 2 or not (rel.parts[0] == "cli" or (ROOT / "latentmap" / rel.parts[0]).is_dir()):
                offenders.append(f"{key}: a descriptive name outside a package folder")
        elif not (module := module_under_test(rel)).is_file():
            offenders.append(f"{key}: no module {module.relative_to(ROOT)}")
    return offenders


def test_every_test_file_mirrors_a_module_that_exists():
    """tests/maps/test_linear.py tests latentmap/maps/linear.py, tests/cli/test_map.py cli/map.py, tests/test_stats.py
    latentmap/stats.py; a file named for what it checks across several modules of one package is listed in
    DESCRIPTIVE_TEST_FILES; helpers live in tests/helpers/, project-wide checks in tests/project/."""
    offenders = mirror_offenders(ROOT / "tests")
    assert not offenders, offenders
    listed = [f for f in DESCRIPTIVE_TEST_FILES if not (ROOT / f).is_file()]
    assert not listed, f"DESCRIPTIVE_TEST_FILES names files that are gone: {listed}"
    for folder in (ROOT / "tests").iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert (folder / "__init__.py").is_file(), f"{folder.name}/ is not a package: pytest needs one scheme"


def test_the_mirror_check_finds_a_test_file_of_no_module(tmp_path):
    tests = tmp_path / "tests"
    for rel in ("maps/test_linear.py", "maps/test_mapper.py", "test_scale.py", "helpers/refs.py", "maps/refs.py",
                "project/test_anything.py"):
        (tests / rel).parent.mkdir(parents=True, exist_ok=True)
        (tests / rel).write_text("")
    found = mirror_offenders(tests)
    assert found == ["tests/maps/refs.py: a helper outside tests/helpers/",
                     "tests/maps/test_mapper.py: no module latentmap/maps/mapper.py",
                     "tests/test_scale.py: no module latentmap/scale.py"], found
