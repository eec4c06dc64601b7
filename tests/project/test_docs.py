"""The README stays short and points into the documentation site, and the site covers what it promises.

`make docs` (mkdocs build --strict, in CI after the tests) checks every link and anchor inside docs/;
these checks need no MkDocs: the README's length, its set-up block, its links and commands, the
pages named in mkdocs.yml, and an API entry for every public name.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SETUP_BLOCK = """```sh
make demo   # creates .venv, installs everything (Fashion-MNIST via apt-get if missing), runs `latentmap demo`
make test   # creates .venv, installs everything, runs the test suite
```"""


def readme() -> str:
    return README.read_text()


def test_readme_is_short_and_keeps_the_two_set_up_commands():
    text = readme()
    assert len(text.splitlines()) <= 200
    assert text.count(SETUP_BLOCK) == 1


def test_readme_links_reach_files():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme())
    assert len(links) >= 15
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, missing


def _readme_commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", readme(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("latentmap "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_shows_three_jobs_whose_options_exist():
    import click

    from latentmap.cli.main import main

    commands = _readme_commands()
    assert [c[:2] for c in commands] == [["support-set", "build"], ["map", "fit"], ["bench", "expressiveness"]]
    for args in commands:
        command, rest, path = main, list(args), ["latentmap"]
        while isinstance(command, click.Group):
            name = rest.pop(0)
            command, path = command.commands[name], path + [name]
        command.make_context(" ".join(path), rest)  # unknown options, bad values and missing ones raise here


def _nav_files(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def test_mkdocs_nav_lists_every_page_and_only_pages_that_exist():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["theme"]["name"] == "material" and config["theme"]["font"] is False
    nav = _nav_files(config["nav"])
    docs = ROOT / "docs"
    assert all((docs / page).is_file() for page in nav), [p for p in nav if not (docs / p).is_file()]
    pages = {str(p.relative_to(docs)) for p in docs.rglob("*.md")}
    assert pages == set(nav), pages ^ set(nav)


def test_api_page_documents_every_public_name_where_it_is_defined():
    tree = ast.parse((ROOT / "latentmap" / "__init__.py").read_text())
    public = next(ast.literal_eval(node.value) for node in tree.body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_PUBLIC")
    entries = re.findall(r"^::: (\S+)$", (ROOT / "docs" / "api.md").read_text(), flags=re.M)
    assert sorted(entries) == sorted(f"{module}.{name}" for name, module in public.items())


def test_reading_the_reports_shows_every_committed_screenshot():
    """The pages of docs/reading/ show the screenshots ``make docs-screenshots`` writes, and only those that
    are committed."""
    docs = ROOT / "docs"
    shown = set()
    for page in sorted((docs / "reading").glob("*.md")):
        for image in re.findall(r"!\[[^\]]+\]\(([^)\s]+)\)", page.read_text()):
            path = (page.parent / image).resolve()
            assert path.is_file(), (page.name, image)
            shown.add(path)
    committed = {p.resolve() for p in (docs / "img").glob("*.png")}
    assert len(committed) >= 10 and shown == committed, shown ^ committed
