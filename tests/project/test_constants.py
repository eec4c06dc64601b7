"""Each shared constant has one home, latentmap/constants.py, and no copy of its value anywhere else."""

import ast
import subprocess
import sys
from pathlib import Path

from latentmap import constants

ROOT = Path(__file__).resolve().parents[2]
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


# --------------------------------------------------------------------------- anchor settings

# parameter or option names whose default is an anchor setting, and the constant that is its one home
ANCHOR_SETTINGS = {"gain_images": "GAIN_IMAGES", "reference_images": "COMPARE_REFERENCE_IMAGES",
                   "pairs": "SPREAD_PAIRS"}


def test_anchor_settings_are_the_constants_everywhere():
    """The support-set builder, the anchor comparison, their CLI options, the registry's anchor defaults and
    FitSource.new_map all take their defaults from latentmap/constants.py."""
    import inspect

    from latentmap.cli.support_set import command
    from latentmap.evaluation.anchors import compare_anchors
    from latentmap.maps.fitting import FitSource
    from latentmap.maps.registry import ESTIMATORS
    from latentmap.support.build import SupportSetSettings

    sig = inspect.signature(compare_anchors).parameters
    assert {k: sig[k].default for k in ("gain_images", "reference_images", "alpha", "bias")} == {
        "gain_images": constants.GAIN_IMAGES, "reference_images": constants.COMPARE_REFERENCE_IMAGES,
        "alpha": constants.COMPARE_ALPHA, "bias": constants.ANCHOR_MAP_DEFAULTS["bias"]}
    assert (SupportSetSettings().gain_images, SupportSetSettings().pairs) == (constants.GAIN_IMAGES,
                                                                              constants.SPREAD_PAIRS)
    build = {p.name: p.default for p in command.commands["build"].params}
    compare = {p.name: p.default for p in command.commands["compare"].params}
    assert (build["gain_images"], build["pairs"]) == (constants.GAIN_IMAGES, constants.SPREAD_PAIRS)
    assert (compare["gain_images"], compare["reference_images"], compare["alpha"], compare["bias"]) == (
        constants.GAIN_IMAGES, constants.COMPARE_REFERENCE_IMAGES, constants.COMPARE_ALPHA,
        constants.ANCHOR_MAP_DEFAULTS["bias"])
    assert ESTIMATORS["linear"].anchor_defaults == dict(constants.ANCHOR_MAP_DEFAULTS)
    anchored, plain = FitSource("support-set", 8).new_map(), FitSource("dataset", 8).new_map()
    assert {"bias": anchored.bias, "alpha": anchored.alpha} == dict(constants.ANCHOR_MAP_DEFAULTS)
    assert (plain.bias, plain.alpha) == (True, 0.0)
    assert FitSource("support-set", 8).new_map(method="procrustes").alpha == 0  # procrustes takes no penalty


def _number(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def test_no_anchor_setting_is_written_as_a_number():
    """No function default, dataclass field or click option default of an anchor setting is a literal."""
    options = {"--" + name.replace("_", "-") for name in ANCHOR_SETTINGS}
    found = []
    for path, tree in sources().items():
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.args + node.args.kwonlyargs
                defaults = [None] * (len(node.args.args) - len(node.args.defaults)) + node.args.defaults \
                    + node.args.kw_defaults
                found += [f"{where}:{node.lineno} {a.arg}" for a, d in zip(args, defaults)
                          if a.arg in ANCHOR_SETTINGS and _number(d)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.target.id in ANCHOR_SETTINGS and _number(node.value):
                found.append(f"{where}:{node.lineno} {node.target.id}")
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and node.args[0].value in options:
                found += [f"{where}:{node.lineno} {node.args[0].value}" for k in node.keywords
                          if k.arg == "default" and _number(k.value)]
    assert not found, found
