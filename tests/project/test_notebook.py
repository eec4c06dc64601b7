"""examples/three_jobs.ipynb runs top to bottom in a fresh python3 kernel and shows its results as tables."""

import ast
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import latentmap

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "three_jobs.ipynb"
TIMEOUT = 900  # seconds per cell: far above the notebook's few minutes on two busy cores


def read():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_notebook_is_committed_clean_for_the_python3_kernel():
    nb = read()
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_notebook_uses_only_the_package_root():
    for cell in read().cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("latentmap"), node.module
            elif isinstance(node, ast.Import):
                assert all(a.name == "latentmap" or not a.name.startswith("latentmap") for a in node.names)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "lm":
                assert node.attr in latentmap._PUBLIC, node.attr


@pytest.fixture(scope="module")
def executed():
    nb = read()
    NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return nb


def html_outputs(nb) -> list[str]:
    return [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "data" in o and "text/html" in o["data"]]


def test_notebook_runs_and_shows_each_job_as_a_table(executed):
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    captions = [m.group(1) for h in html_outputs(executed) for m in [re.search(r"<caption>(.*?)</caption>", h)] if m]
    for start in ("Relocation fmnist-vae-a -&gt; fmnist-vae-b", "Relocation atlas", "Support set vae-a-small",
                  "Expressiveness leaderboard", "Sector coverage", "Fidelity and diversity"):
        assert any(c.startswith(start) for c in captions), (start, captions)
    assert all("<table" in h for h in html_outputs(executed))
