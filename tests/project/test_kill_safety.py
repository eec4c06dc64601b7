"""SIGKILL a real process at the dangerous moments of an atomic output write.

The previous result must survive (or come back with the next run) and the next run must leave no
hidden ``.NAME.tmp-*`` / ``.NAME.old-*`` folders of its own behind, while a user's folders that merely
look like them (an older version's ``.NAME.tmp-PID-XXXX``, ``.NAME.old-PID``, or any without latentmap's
ownership file) are never touched.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import json

import pytest

from latentmap.errors import ConfigError
from latentmap.io.atomic import OWNER_NAME, PAUSE_ENV, atomic_directory, check_output_path, recover

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import sys, time
from latentmap.io.atomic import atomic_directory
out, text, where = sys.argv[1:4]
with atomic_directory(out, kind="report", overwrite=True) as tmp:
    (tmp / "result.txt").write_text(text)
    if where == "inside":
        print("inside the block", file=sys.stderr, flush=True)
        time.sleep(600)
print("finished", file=sys.stderr, flush=True)
"""


def write(out, text, **kwargs):
    with atomic_directory(out, kind="report", **kwargs) as tmp:
        (tmp / "result.txt").write_text(text)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def owned_by(folder, pid, role):
    """The ``.out.ROLE-*`` folders beside ``out`` whose ownership file names process ``pid``."""
    found = []
    for p in folder.glob(f".out.{role}-*"):
        owner = p / OWNER_NAME
        if owner.is_file() and json.loads(owner.read_text())["pid"] == pid:
            found.append(p)
    return found


def users_lookalikes(folder, pids):
    """A user's folders named like latentmap's temporary and backup folders of processes ``pids`` (old-style names),
    or like new ones but without an ownership file."""
    names = [".out.tmp-0123456789abcdef", ".out.old-fedcba9876543210"]
    names += [name for pid in pids for name in (f".out.tmp-{pid}-abc123", f".out.old-{pid}")]
    for name in names:
        (folder / name).mkdir()
        (folder / name / "thesis.tex").write_text("years of work")
    return names


class Child:
    """A Python process writing ``out`` that blocks at ``where`` ("inside" or "between-renames")."""

    def __init__(self, out, text, where):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        env.pop(PAUSE_ENV, None)
        if where != "inside":
            env[PAUSE_ENV] = where
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out), text, where], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.pid = self.proc.pid
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text, timeout=120):
        seen = []
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"child exited ({self.proc.wait()}) before '{text}':\n{''.join(seen)}")
            seen.append(line)
            if text in line:
                return

    def kill(self, reap=True):
        self.proc.send_signal(signal.SIGKILL)
        if reap:
            assert self.proc.wait(timeout=60) == -signal.SIGKILL

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)


@pytest.fixture
def child_factory():
    children = []

    def start(out, text, where):
        children.append(Child(out, text, where))
        return children[-1]

    yield start
    for child in children:
        child.close()


def test_killed_inside_the_block_keeps_the_previous_result(tmp_path, child_factory):
    out = tmp_path / "out"
    write(out, "previous")
    child = child_factory(out, "new", "inside")
    child.wait_for("inside the block")
    assert len(owned_by(tmp_path, child.pid, "tmp")) == 1
    child.kill()
    assert (out / "result.txt").read_text() == "previous"
    with pytest.raises(ConfigError, match="already holds a latentmap report"):
        check_output_path(out, "report", overwrite=False)  # the check alone cleans up
    assert listing(tmp_path) == ["out"]
    write(out, "next", overwrite=True)
    assert (out / "result.txt").read_text() == "next" and listing(tmp_path) == ["out"]


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_killed_between_the_renames_restores_the_previous_result(tmp_path, child_factory, reap):
    if not reap and not Path("/proc/self/stat").exists():
        pytest.skip("telling a zombie from a live process needs /proc")
    out = tmp_path / "out"
    write(out, "previous")
    child = child_factory(out, "new", "between-renames")
    child.wait_for(f"{PAUSE_ENV}=between-renames")
    assert not out.exists()  # the dangerous moment: the previous result exists only as the backup
    [backup] = owned_by(tmp_path, child.pid, "old")
    assert (backup / "out" / "result.txt").read_text() == "previous"
    child.kill(reap=reap)
    if not reap:  # killed but not yet waited for: a zombie, which must count as dead
        for _ in range(600):
            if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            threading.Event().wait(0.05)
    # the next run, even one that is refused, brings the previous result back first
    with pytest.raises(ConfigError, match=r"already holds a latentmap report; pass --overwrite"):
        write(out, "refused")
    assert (out / "result.txt").read_text() == "previous"
    assert listing(tmp_path) == ["out"]
    write(out, "next", overwrite=True)
    assert (out / "result.txt").read_text() == "next" and listing(tmp_path) == ["out"]


def test_killed_between_the_renames_of_a_first_write_leaves_nothing(tmp_path, child_factory):
    out = tmp_path / "out"
    child = child_factory(out, "new", "between-renames")
    child.wait_for(f"{PAUSE_ENV}=between-renames")
    child.kill()
    assert not out.exists() and listing(tmp_path)  # only the killed run's temporary folder
    check_output_path(out, "report", overwrite=False)
    assert listing(tmp_path) == []


def test_leftovers_of_a_live_writer_are_left_alone(tmp_path, child_factory):
    out = tmp_path / "out"
    write(out, "previous")
    child = child_factory(out, "new", "between-renames")
    child.wait_for(f"{PAUSE_ENV}=between-renames")
    during = listing(tmp_path)
    assert len(owned_by(tmp_path, child.pid, "old")) == 1 and len(owned_by(tmp_path, child.pid, "tmp")) == 1
    assert len(during) == 2
    recover(out)
    check_output_path(out, "report", overwrite=False)  # nothing at 'out' right now: accepted
    assert listing(tmp_path) == during  # the live process's backup and temporary folder untouched
    child.kill()
    recover(out)
    assert (out / "result.txt").read_text() == "previous" and listing(tmp_path) == ["out"]


def test_unkilled_child_finishes_normally(tmp_path, child_factory):
    out = tmp_path / "out"
    write(out, "previous")
    child = child_factory(out, "new", "none")
    child.wait_for("finished")
    assert child.proc.wait(timeout=60) == 0
    assert (out / "result.txt").read_text() == "new" and listing(tmp_path) == ["out"]


@pytest.mark.parametrize("where", ["inside", "between-renames", "after-renames"])
def test_killed_anywhere_cleans_only_its_own_leftovers(tmp_path, child_factory, where):
    """The exclusive, owned temporary names: after a SIGKILL at any moment the next run restores or keeps a
    complete result and removes only what the killed run made; a user's lookalike folders stay as they were."""
    out = tmp_path / "out"
    write(out, "previous")
    child = child_factory(out, "new", where)
    child.wait_for("inside the block" if where == "inside" else f"{PAUSE_ENV}={where}")
    child.kill()
    users = users_lookalikes(tmp_path, [child.pid, os.getpid(), 999_999_999])
    recover(out)
    expected = "new" if where == "after-renames" else "previous"
    assert (out / "result.txt").read_text() == expected
    assert listing(out) == [".latentmap-output.json", "result.txt"]  # no ownership file left in the result
    assert listing(tmp_path) == sorted(["out", *users])
    assert all((tmp_path / name / "thesis.tex").read_text() == "years of work" for name in users)
    write(out, "next", overwrite=True)
    assert (out / "result.txt").read_text() == "next" and listing(tmp_path) == sorted(["out", *users])
