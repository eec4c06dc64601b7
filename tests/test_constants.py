"""Each shared constant has one home, latentmap/constants.py, and no copy of its value anywhere else."""

import ast
import subprocess
import sys
from pathlib import Path

from latentmap import constants

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("PICKLE_SUFFIXES", "IMAGE_SPEC_PREFIXES", "ANCHOR_STRATEGIES", "BASELINE_STRATEGIES", "SPLITS", "SAMPLERS")


def sources() -> dict[Path, ast.Module]:
    paths = [*(ROOT / "latentmap").rglob("*.py"), *(ROOT / "cli").glob("*.py")]
    return {p: ast.parse(p.read_text()) for p in paths}


def assigned_names(tree: ast.Module):
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    yield name.id


def literal_sequences(tree: ast.Module):
    """(line, value) of every tuple or list literal made of constants only."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List)) and node.elts \
                and all(isinstance(e, ast.Constant) for e in node.elts):
            yield node.lineno, tuple(e.value for e in node.elts)


def test_each_shared_constant_is_assigned_once_in_constants():
    places = {name: [] for name in SHARED}
    for path, tree in sources().items():
        for name in assigned_names(tree):
            if name in places:
                places[name].append(path.relative_to(ROOT).as_posix())
    assert places == {name: ["latentmap/constants.py"] for name in SHARED}


def test_no_copy_of_a_shared_value_is_written_out():
    values = {getattr(constants, name): name for name in SHARED}
    copies = [f"{path.relative_to(ROOT)}:{line} copies {values[value]}"
              for path, tree in sources().items() if path.name != "constants.py"
              for line, value in literal_sequences(tree) if value in values]
    assert not copies, copies


def test_the_loader_and_the_cli_agree_on_pickle_endings(tmp_path):
    from latentmap.cli.models import identify
    from latentmap.models.sources import _is_pickle_file

    for suffix in constants.PICKLE_SUFFIXES:
        path = tmp_path / f"generator{suffix.upper()}"
        path.write_bytes(b"not read")
        assert identify(path)["source"] == "pickle", suffix
        assert _is_pickle_file(str(path)), suffix


def test_constants_import_nothing_heavy():
    code = "import sys; import latentmap.constants; print(sorted({'torch', 'numpy', 'click'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


FORMATTERS = {"sig": "latentmap/report/tables.py", "percent": "latentmap/report/tables.py"}
FORMATTER_LIKE = ("sig", "pct", "percent", "share", "fmt")  # names a second number formatter would take


def test_one_number_formatter_and_one_percent_formatter():
    defined = {}
    for path, tree in sources().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and node.name.strip("_") in FORMATTER_LIKE:
                defined.setdefault(node.name, []).append(path.relative_to(ROOT).as_posix())
    assert defined == {name: [home] for name, home in FORMATTERS.items()}
