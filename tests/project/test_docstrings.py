"""Every public function, class and method has a docstring (the API reference is built from them), and mypy
checks every module (`make typecheck`, with every function annotated).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    """The dotted name mypy gives a file under latentmap/ or cli/ (cli/ is checked as ``cli``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of latentmap/ and cli/, by name."""
    files = [p for top in ("latentmap", "cli") for p in sorted((ROOT / top).rglob("*.py"))]
    return {module_name(p): p for p in files}


def _overload(node: ast.AST) -> bool:
    """An ``@overload`` stub (the implementation after it carries the docstring) or a property's setter or deleter
    (the property's getter carries it)."""
    decorators = getattr(node, "decorator_list", [])
    names = [d.id if isinstance(d, ast.Name) else getattr(d, "attr", None) for d in decorators]
    return any(name in ("overload", "setter", "deleter") for name in names)


def undocumented(source: str) -> list[str]:
    """Public (no leading underscore) functions and classes of a module's top level, and public methods of its
    public classes, that have no docstring (``@overload`` stubs aside)."""
    found = []
    for node in ast.parse(source).body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        if _overload(node):
            continue
        if ast.get_docstring(node) is None:
            found.append(node.name)
        if isinstance(node, ast.ClassDef):
            found += [f"{node.name}.{sub.name}" for sub in node.body
                      if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _overload(sub)
                      and not sub.name.startswith("_") and ast.get_docstring(sub) is None]
    return found


def test_no_module_skips_the_type_checker():
    """mypy checks every module: pyproject.toml's [tool.mypy] overrides may relax imports of untyped packages,
    never skip a module's errors."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    skipping = [o["module"] for o in config["tool"]["mypy"].get("overrides", [])
                if o.get("ignore_errors") or o.get("disallow_untyped_defs") is False]
    assert not skipping, f"modules mypy does not fully check: {skipping}"
    assert config["tool"]["mypy"]["disallow_untyped_defs"] is True


def test_every_module_documents_every_public_name():
    missing = {name: gaps for name, path in all_modules().items() if (gaps := undocumented(path.read_text()))}
    assert not missing, f"public names without a docstring: {missing}"


def test_the_docstring_check_sees_what_it_should():
    source = ('def public(): pass\n'
              'def _private(): pass\n'
              'def documented():\n    """Here."""\n'
              'class Thing:\n    """A thing."""\n    def method(self): pass\n    def _helper(self): pass\n'
              '    @property\n    def size(self):\n        """Documented."""\n'
              '    @size.setter\n    def size(self, value): pass\n'
              '    def __len__(self): return 0\n'
              'class _Hidden:\n    def method(self): pass\n'
              '@overload\ndef stub(x: int) -> int: ...\n'
              '@typing.overload\ndef stub(x: str) -> str: ...\n'
              'def stub(x):\n    """Documented once."""\n')
    assert undocumented(source) == ["public", "Thing.method"]
