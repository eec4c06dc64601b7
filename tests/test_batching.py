"""Progress bars: shown only when asked, not silenced, and on a terminal."""

import io
import sys
from unittest import mock

import pytest

from latentmap import batching
from latentmap.batching import progress_bar, set_quiet, with_progress
from tests.helpers.progress import Bar, recorded_bars


def test_a_bar_is_shown_only_when_asked_on_a_terminal_and_not_silenced():
    steps = range(3)
    not_silenced = mock.patch.dict(batching._QUIET, {"on": False})  # whatever an earlier CLI test left
    with mock.patch.object(sys, "stderr", io.StringIO()), not_silenced:  # a log or a pipe: no bar
        assert with_progress(steps, "work", True) is steps
    with recorded_bars() as bars:
        assert list(with_progress(steps, "work", True, unit="step")) == [0, 1, 2]
        assert with_progress(steps, "not asked", False) is steps
        progress_bar(5, "bar", True).close()
        progress_bar(5, "not asked", False).close()
        set_quiet(True)
        try:
            assert with_progress(steps, "silenced", True) is steps
            progress_bar(5, "silenced", True).close()
        finally:
            set_quiet(False)
    assert bars == [Bar("work", "step", 3), Bar("bar", "batch", 5)]


@pytest.mark.parametrize("enabled", [True, False])
def test_a_bar_passes_every_item_through(enabled):
    with recorded_bars():
        assert list(with_progress(iter("abc"), "letters", enabled, total=3)) == ["a", "b", "c"]
