"""``latentmap report index [FOLDER]``: the page that lists every report in a folder with its headline numbers."""

from __future__ import annotations

import click


@click.group("report")
def command() -> None:
    """Pages about reports: the index of a reports folder."""


@command.command("index")
@click.argument("folder", type=click.Path(file_okay=False), default="reports", required=False)
def index(folder: str) -> None:
    """Write FOLDER/index.html (default: reports/) listing every report folder in FOLDER with its findings.

    Once it exists, every command that writes a report into FOLDER refreshes it.
    """
    from pathlib import Path

    from latentmap.errors import ConfigError
    from latentmap.report.index import INDEX_NAME, is_reports_index, report_entries, write_reports_index

    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"reports folder '{folder}' does not exist")
    existing = path / INDEX_NAME
    if existing.exists() and not is_reports_index(existing):
        raise ConfigError(f"'{existing}' exists and is not a reports index written by latentmap; "
                          "it is left alone (is FOLDER a report itself?)")
    entries = report_entries(path)
    out = write_reports_index(path, entries)
    for e in entries:
        click.echo(f"{e.name:24s} {e.kind:14s} {e.findings[0] if e.findings else ''}")
    click.echo(f"index of {len(entries)} reports written to {out}")
