"""The package root is the library's face: what users need resolves from it, and the scripts use it."""

import ast
import warnings
from pathlib import Path

import pytest

import latentmap

ROOT = Path(__file__).resolve().parents[2]
# deep imports the scripts keep on purpose: the internals a benchmark measures, the reference VAEs' training loss
# internals a script uses on purpose: the pass a benchmark times, a training loss, the loader settings a benchmark
# varies, the exclusive atomic file write the benchmarks record their results with, the figure style of the reports,
# and the inactivity threshold the diagnostics use
DEEP_ALLOWED = {"latentmap.support.info_gain", "latentmap.losses", "latentmap.batching", "latentmap.io.atomic",
                "latentmap.report.figures", "latentmap.evaluation.metrics"}
RESULT_CLASSES = ("RelocationResult", "AtlasResult", "ExpressivenessResult", "CoverageResult", "FidelityResult",
                  "SupportSet", "CompareResult", "InversionResult")


def test_every_public_name_resolves_to_the_object_its_module_defines():
    import importlib

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name, module in latentmap._PUBLIC.items():
            assert getattr(latentmap, name) is getattr(importlib.import_module(module), name), name
    assert set(latentmap.__all__) == {"__version__", *latentmap._PUBLIC}


def test_fitting_from_python_and_the_estimator_base_are_public():
    from latentmap.maps.base import MapEstimator
    from latentmap.maps.fitting import FitSource, fit_map, resolve_fit_source

    assert (latentmap.FitSource, latentmap.fit_map, latentmap.resolve_fit_source) == (FitSource, fit_map,
                                                                                      resolve_fit_source)
    assert latentmap.MapEstimator is MapEstimator
    assert issubclass(latentmap.PiecewiseLinearMap, latentmap.MapEstimator)


@pytest.mark.parametrize("name", RESULT_CLASSES)
def test_every_result_class_is_public_and_renders_in_notebooks(name):
    cls = getattr(latentmap, name)
    assert callable(getattr(cls, "to_frame", None)) and callable(getattr(cls, "_repr_html_", None))


def script_imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("latentmap"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("latentmap")]
    return found


def test_benchmarks_and_experiments_import_the_package_root():
    scripts = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "experiments").glob("*.py")])
    assert scripts
    deep, unknown = [], []
    for path in scripts:
        for module, names in script_imports(path):
            if module == "latentmap":
                unknown += [f"{path.name}: {n}" for n in names
                            if n not in latentmap._PUBLIC and n != "__version__" and n not in DEEP_ALLOWED_ROOT]
            elif module not in DEEP_ALLOWED:
                deep.append(f"{path.name}: {module}")
    assert not deep, deep
    assert not unknown, unknown


DEEP_ALLOWED_ROOT = {"batching"}  # a submodule, imported as such


def test_the_old_anchor_comparison_path_works_with_a_deprecation_warning():
    import latentmap.evaluation.anchors as new_home
    import latentmap.support.anchors as old_home

    with pytest.warns(DeprecationWarning, match="moved to latentmap.evaluation.anchors.compare_anchors"):
        assert old_home.compare_anchors is new_home.compare_anchors
    with pytest.raises(AttributeError):
        _ = old_home.no_such_name
