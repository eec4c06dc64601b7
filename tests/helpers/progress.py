"""Progress bars recorded as a terminal would get them: which bars long work opens, with which label and unit.

latentmap shows a bar only when asked and when stderr is a terminal (latentmap.batching.progress_shown); under
pytest stderr is captured, so :func:`recorded_bars` stands a terminal in for it and records every bar that is
shown (never a disabled one), writing the bars themselves nowhere.
"""

import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from unittest import mock


@dataclass(frozen=True)
class Bar:
    """One shown bar: its label, its unit and its total (None when unknown)."""

    desc: str
    unit: str
    total: int | None


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def recorded_bars() -> Iterator[list[Bar]]:
    """Within the block stderr is a terminal and bars are not silenced; yields the list every shown bar is
    appended to."""
    import tqdm.auto
    import tqdm.std

    from latentmap import batching

    shown: list[Bar] = []
    base = tqdm.std.tqdm  # the plain bar, whatever tqdm.auto would pick (a notebook's widget ignores file=)

    class Recording(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})
            if not self.disable:  # as tqdm read them (the total from the iterable's length where not given)
                shown.append(Bar(self.desc, self.unit, self.total))

    # a CLI test run with --quiet earlier in the process leaves the bars silenced: not within this block
    with mock.patch.object(tqdm.auto, "tqdm", Recording), mock.patch.object(sys, "stderr", Terminal()), \
            mock.patch.dict(batching._QUIET, {"on": False}):
        yield shown


def labels(bars: list[Bar]) -> list[str]:
    """The labels of ``bars`` in the order they were opened."""
    return [bar.desc for bar in bars]
