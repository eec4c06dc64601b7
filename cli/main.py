"""Entry point: the ``latentmap`` group, and the error policy.

Deliberate errors (``LatentmapError``) become one line on stderr and exit code 2, like
click's own usage errors. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import signal
import sys
from collections.abc import Sequence
from typing import Any

import click

from latentmap.version import __version__
from latentmap.cli.options import REPORT_KEY, WARNINGS_KEY
from latentmap.errors import LatentmapError


class LatentmapGroup(click.Group):
    """The ``latentmap`` group: usage errors and deliberate errors (``LatentmapError``) as one line on stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Usage errors as one line too ("Error: ... (see 'latentmap map fit --help')"), exit code 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        _ignore_file_size_signal()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(f"Error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; a ``LatentmapError`` or a machine's write failure (disk full, read-only, ...) exits 2
        with one line, then the reports index is refreshed and the collected warnings are printed."""
        try:
            result = super().invoke(ctx)
        except LatentmapError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:
            if exc.errno not in MACHINE_WRITE_ERRNOS:
                raise
            where = f" '{exc.filename}'" if exc.filename else ""  # a write outside an atomic output folder
            click.echo(f"Error: cannot write{where}: {exc.strerror or exc} ({errno.errorcode.get(exc.errno)})", err=True)
            ctx.exit(2)
        if ctx.meta.get(REPORT_KEY):
            _refresh_reports_index(ctx.meta[REPORT_KEY])
        for message in ctx.meta.get(WARNINGS_KEY, []):  # after the work, so an error stays one line
            click.echo(f"Warning: {message}", err=True)
        return result


MACHINE_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS}
"""Write failures that are the machine's, never a bug: one line wherever they happen (outputs name themselves
through latentmap.io.atomic's OutputWriteError; this catches writes elsewhere, such as a cache)."""


def _ignore_file_size_signal() -> None:
    """A file-size limit (ulimit -f) then fails the write with EFBIG, reported in one line, instead of killing the
    process with SIGXFSZ mid-write."""
    if hasattr(signal, "SIGXFSZ"):
        with contextlib.suppress(ValueError, OSError):  # ValueError: not the main thread
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _refresh_reports_index(report_folder: str) -> None:
    """A report written into a folder with a reports index (``latentmap report index``) is listed there."""
    from latentmap.report.index import refresh_parent_index

    try:
        index = refresh_parent_index(report_folder)
    except OSError as exc:
        click.echo(f"Warning: could not refresh the reports index beside '{report_folder}': {exc}", err=True)
        return
    if index is not None:
        click.echo(f"reports index refreshed: {index}")


@click.group(cls=LatentmapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="latentmap")
@click.option("--quiet", "-q", is_flag=True, default=False,
              help="No progress bars (they are shown on stderr only when it is a terminal).")
def main(quiet: bool) -> None:
    """Map between the latent spaces of generative models and benchmark what generators can produce.

    Each process runs on LATENTMAP_THREADS threads, else OMP_NUM_THREADS, else 1 (what torchrun gives a rank),
    so a plain run and a torchrun launch write the same numbers (docs/determinism.md)."""
    import os

    from latentmap import distributed

    # the same threads per process in a plain run and in each torchrun rank (LATENTMAP_THREADS, else
    # OMP_NUM_THREADS, else 1): float32 passes can round by thread count, and the numbers must not
    distributed.pin_threads()
    if os.environ.get("WORLD_SIZE", "").strip() not in ("", "1"):  # started by torchrun: join the process group
        distributed.init()  # a malformed or incomplete launch environment is one line, before any wait
        atexit.register(distributed.shutdown)  # every rank leaves the group together, after its last collective
        if not distributed.is_main():  # rank 0 alone prints (and writes, see latentmap.io.atomic)
            sys.stdout = open(os.devnull, "w")
            quiet = True
    from latentmap.batching import set_quiet

    set_quiet(quiet)  # each invocation decides (one process may run several, as a test or a notebook does)


def _register() -> None:
    from latentmap.cli import bench, datasets, demo, diagnose, invert, map, models, report, support_set, train

    for module in (train, datasets, models, demo, support_set, map, invert, diagnose, bench, report):
        main.add_command(module.command)


_register()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
