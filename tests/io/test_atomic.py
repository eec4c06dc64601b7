import os

import pytest

from latentmap.io.atomic import atomic_directory, atomic_write_bytes
from latentmap.errors import ConfigError


def test_success_replaces_and_cleans(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # untouched while writing
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o700)


def test_failure_keeps_previous_and_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise KeyboardInterrupt
    assert (target / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_no_overwrite_and_file_in_the_way(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConfigError, match="already exists"):
        with atomic_directory(tmp_path / "exists", overwrite=False):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        with atomic_directory(tmp_path / "file"):
            pass


def test_atomic_write_bytes(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"123")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"123"


# --- output markers and up-front checks -------------------------------------------------------------

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from latentmap.io import atomic as atomic_module
from latentmap.io import leftovers
from latentmap.io.atomic import MARKER_NAME, check_output_path, read_output_marker, recover


def write_output(path, kind="report", text="v1", **kwargs):
    with atomic_directory(path, kind=kind, **kwargs) as tmp:
        (tmp / "result.txt").write_text(text)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_marker_written_with_kind_version_and_time(tmp_path):
    from latentmap import __version__

    write_output(tmp_path / "out", kind="checkpoint")
    marker = json.loads((tmp_path / "out" / MARKER_NAME).read_text())
    assert marker["kind"] == "checkpoint" and marker["latentmap_version"] == __version__
    assert marker["created"].endswith("+00:00")
    assert read_output_marker(tmp_path / "out")["kind"] == "checkpoint"
    assert listing(tmp_path) == ["out"]
    assert oct(os.stat(tmp_path / "out" / MARKER_NAME).st_mode & 0o077) != oct(0)


def test_missing_and_empty_folder_accepted(tmp_path):
    assert check_output_path(tmp_path / "a" / "b", "map", overwrite=False) == tmp_path / "a" / "b"
    assert listing(tmp_path) == []  # the check itself writes nothing
    (tmp_path / "empty").mkdir()
    write_output(tmp_path / "empty", kind="map")  # explicit kind: overwrite defaults to False
    assert (tmp_path / "empty" / "result.txt").read_text() == "v1"
    write_output(tmp_path / "a" / "b", kind="map")
    assert read_output_marker(tmp_path / "a" / "b")["kind"] == "map"


def test_foreign_folder_refused_and_untouched(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match=r"^'.*photos' exists and was not written by latentmap; "
                                              r"choose another --out$"):
            write_output(out, overwrite=overwrite)
    assert listing(out) == ["holiday.jpg"] and listing(tmp_path) == ["photos"]


def test_other_kind_refused_even_with_overwrite(tmp_path):
    write_output(tmp_path / "out", kind="checkpoint")
    with pytest.raises(ConfigError, match=r"^'.*out' holds a latentmap checkpoint, not a report; choose another --out$"):
        check_output_path(tmp_path / "out", "report", overwrite=True)
    assert read_output_marker(tmp_path / "out")["kind"] == "checkpoint"


def test_own_output_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    write_output(out, text="v1")
    with pytest.raises(ConfigError, match=r"^'.*out' already holds a latentmap report; pass --overwrite to replace it$"):
        write_output(out, text="v2")
    assert (out / "result.txt").read_text() == "v1"
    write_output(out, text="v2", overwrite=True)
    assert (out / "result.txt").read_text() == "v2" and listing(tmp_path) == ["out"]


def test_corrupt_marker_counts_as_foreign(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER_NAME).write_text("{not json")
    assert read_output_marker(out) is None
    with pytest.raises(ConfigError, match="was not written by latentmap"):
        check_output_path(out, "report", overwrite=True)


def test_file_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^'.*file' exists and is not a folder; choose another --out$"):
        check_output_path(tmp_path / "file", "report", overwrite=True)
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("raw", ["", " ", ".", "..", "./", "sub/.", "sub/..", "/", "sub/./"])
def test_paths_that_name_no_folder_refused(tmp_path, monkeypatch, raw):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match=r"cannot be an output folder .*; choose another --out$"):
        check_output_path(raw, "report", overwrite=True)
    with pytest.raises(ConfigError, match="cannot be an output folder"):
        with atomic_directory(raw):  # the generic output of older callers too
            pass
    assert listing(tmp_path) == ["sub"] and listing(tmp_path / "sub") == []


def test_trailing_slash_is_the_folder(tmp_path):
    write_output(f"{tmp_path}/out/")
    assert listing(tmp_path) == ["out"]


def test_inputs_protected(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.npy").write_text("x")
    with pytest.raises(ConfigError, match=r"^'.*data' is also an input of this command; choose another --out$"):
        check_output_path(data, "report", overwrite=True, inputs=[data])
    with pytest.raises(ConfigError, match=r"^'.*' contains the input '.*x.npy'; choose another --out$"):
        check_output_path(tmp_path, "report", overwrite=True, inputs=["unrelated", data / "x.npy"])
    with pytest.raises(ConfigError, match=r"^'.*data/out' is inside the input '.*data'; choose another --out$"):
        write_output(data / "out", inputs=[data])
    link = tmp_path / "link"
    link.symlink_to(data)
    with pytest.raises(ConfigError, match="is also an input"):
        check_output_path(link, "report", overwrite=True, inputs=[str(data)])
    assert check_output_path(tmp_path / "other", "report", overwrite=False, inputs=[data, None, ""])
    assert listing(data) == ["x.npy"]


def test_parent_under_a_file_refused_up_front(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"^cannot create '.*file/sub/out': '.*file' is not a folder; "
                                          r"choose another --out$"):
        check_output_path(tmp_path / "file" / "sub" / "out", "report", overwrite=False)
    ran = []
    with pytest.raises(ConfigError, match="is not a folder"):
        with atomic_directory(tmp_path / "file" / "out"):
            ran.append(1)
    assert not ran and listing(tmp_path) == ["file"]


def test_unwritable_parent_refused_up_front(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        try:
            (locked / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("permissions are not enforced here (running as root)")
        with pytest.raises(ConfigError, match=r"^cannot write to '.*locked' \(.*\); choose another --out$"):
            check_output_path(locked / "out", "report", overwrite=False)
        with pytest.raises(ConfigError, match="cannot write to"):
            check_output_path(locked / "a" / "b", "report", overwrite=False)
    finally:
        locked.chmod(0o700)


def test_failure_removes_the_parents_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "a" / "b" / "out", kind="report") as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("boom")
    assert listing(tmp_path) == []


def test_folder_appearing_during_the_run_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="was not written by latentmap"):
        with atomic_directory(out, kind="report") as tmp:
            (tmp / "result.txt").write_text("ours")
            out.mkdir()
            (out / "theirs.txt").write_text("theirs")
    assert listing(out) == ["theirs.txt"] and listing(tmp_path) == ["out"]


def test_generic_output_keeps_old_behaviour(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "foreign.txt").write_text("x")
    with atomic_directory(out) as tmp:  # kind=None: no marker check, overwrite defaults to True
        (tmp / "new.txt").write_text("new")
    assert listing(out) == ["new.txt"]
    with pytest.raises(ValueError, match="non-empty name"):
        check_output_path(out, "", overwrite=True)


# --- leftovers of killed runs (see also test_kill_safety.py) ---------------------------------------

def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def make_result(folder, text, kind="report"):
    folder.mkdir()
    (folder / "result.txt").write_text(text)
    (folder / MARKER_NAME).write_text(json.dumps({"kind": kind, "latentmap_version": "0", "created": "x"}))


def owned(parent, name, role, pid, text=None, start=None, token=None, host=None):
    """A temporary (role "tmp") or backup ("old") folder as latentmap makes them, owned by ``pid``; a backup
    holds the previous result ``text``."""
    token = token or os.urandom(8).hex()
    folder = parent / f".{name}.{role}-{token}"
    folder.mkdir()
    owner = {"role": role, "name": name, "token": token, "pid": pid, "start": start,
             "host": leftovers._HOST if host is None else host, "created": time.time()}
    (folder / atomic_module.OWNER_NAME).write_text(json.dumps(owner))
    if text is not None:
        make_result(folder / name if role == "old" else folder, text) if role == "old" else \
            (folder / "half.txt").write_text(text)
    return folder


def lookalikes(parent, name, pid):
    """A user's folders that merely look like latentmap's leftovers: old-style names, or no ownership file."""
    names = [f".{name}.tmp-{pid}-abc123", f".{name}.old-{pid}", f".{name}.tmp-0123456789abcdef"]
    for n in names:
        make_result(parent / n, "a user's")
    return names


def test_backup_of_a_dead_process_is_restored_and_leftovers_removed(tmp_path):
    pid = dead_pid()
    owned(tmp_path, "out", "old", pid, "previous")
    owned(tmp_path, "out", "tmp", pid, "half")
    other = owned(tmp_path, "other", "tmp", pid, "half").name  # another output's: not ours to touch
    users = lookalikes(tmp_path, "out", pid)
    with pytest.raises(ConfigError, match="already holds a latentmap report"):
        check_output_path(tmp_path / "out", "report", overwrite=False)
    assert (tmp_path / "out" / "result.txt").read_text() == "previous"
    assert listing(tmp_path) == sorted([other, "out", *users])
    assert all((tmp_path / n / "result.txt").read_text() == "a user's" for n in users)


def test_newest_backup_wins_and_backups_beside_a_result_are_removed(tmp_path):
    pids = [dead_pid(), dead_pid()]
    owned(tmp_path, "out", "old", pids[0], "older")
    time.sleep(0.05)
    owned(tmp_path, "out", "old", pids[1], "newer")
    recover(tmp_path / "out")
    assert (tmp_path / "out" / "result.txt").read_text() == "newer" and listing(tmp_path) == ["out"]
    owned(tmp_path, "out", "old", pids[0], "stale")
    recover(tmp_path / "out")
    assert (tmp_path / "out" / "result.txt").read_text() == "newer" and listing(tmp_path) == ["out"]


def test_ownership_file_must_match_the_folder(tmp_path):
    pid = dead_pid()
    wrong_token = owned(tmp_path, "out", "tmp", pid, "half")
    wrong_token.rename(tmp_path / ".out.tmp-ffffffffffffffff")  # the record names another folder
    owned(tmp_path, "other", "tmp", pid, "half").rename(tmp_path / ".out.tmp-0000000000000000")  # another name's
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / ".out.tmp-1111111111111111").symlink_to(real)  # a link is never followed nor removed
    before = listing(tmp_path)
    recover(tmp_path / "out")
    assert listing(tmp_path) == before


def test_own_pid_leftover_from_an_earlier_life_is_recovered(tmp_path):
    # In a container every run may be PID 1: a backup owned by our own PID that this process did not make is stale.
    owned(tmp_path, "out", "old", os.getpid(), "previous")
    owned(tmp_path, "out", "tmp", os.getpid(), "half")
    users = lookalikes(tmp_path, "out", os.getpid())
    write_output(tmp_path / "out", text="new", overwrite=True)
    assert (tmp_path / "out" / "result.txt").read_text() == "new" and listing(tmp_path) == sorted(["out", *users])


def test_leftovers_of_live_processes_untouched(tmp_path):
    live = {os.getppid(), 1} - {os.getpid()}
    for pid in live:
        owned(tmp_path, "out", "old", pid, "in use")
        owned(tmp_path, "out", "tmp", pid, "in use")
    owned(tmp_path, "out", "tmp", dead_pid(), "half", host="another-machine")  # never judged from here
    before = listing(tmp_path)
    check_output_path(tmp_path / "out", "report", overwrite=False)
    assert listing(tmp_path) == before


def test_reused_pid_detected_by_start_time(tmp_path):
    if leftovers._proc_stat(os.getppid()) is None:
        pytest.skip("no /proc")
    started = leftovers._start_ticks(os.getppid())
    owned(tmp_path, "out", "tmp", os.getppid(), "half", start=started + 1)  # recorded for an earlier process
    kept = owned(tmp_path, "out", "tmp", os.getppid(), "half", start=started).name  # the live parent's own
    recover(tmp_path / "out")
    assert listing(tmp_path) == [kept]


def test_temporary_folders_are_exclusive_unguessable_and_owned(tmp_path, monkeypatch):
    seen = []
    real_mkdir = os.mkdir

    def spy(path, *args, **kwargs):
        seen.append(Path(path).name)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(atomic_module.os, "mkdir", spy)
    with atomic_directory(tmp_path / "out", kind="report") as tmp:
        assert re.fullmatch(r"\.out\.tmp-[0-9a-f]{16}", tmp.name) and tmp.parent == tmp_path
        owner = json.loads((tmp / atomic_module.OWNER_NAME).read_text())
        assert owner["pid"] == os.getpid() and tmp.name.endswith(owner["token"]) and owner["role"] == "tmp"
        (tmp / "result.txt").write_text("v1")
    made = [n for n in seen if n.startswith(".out")]
    assert made and all(re.fullmatch(r"\.out\.tmp-[0-9a-f]{16}", n) for n in made)
    assert listing(tmp_path / "out") == sorted([MARKER_NAME, "result.txt"])  # no ownership file in the result
    # a name that is taken is never reused: a user's folder of the same name stays as it was
    taken = tmp_path / ".out.tmp-0000000000000000"
    make_result(taken, "a user's")
    tokens = iter(["0000000000000000", "1111111111111111", "2222222222222222"])  # tmp twice, then the backup
    monkeypatch.setattr(leftovers.secrets, "token_hex", lambda n: next(tokens))
    with atomic_directory(tmp_path / "out", kind="report", overwrite=True) as tmp:
        assert tmp.name == ".out.tmp-1111111111111111"
        (tmp / "result.txt").write_text("v2")
    assert (taken / "result.txt").read_text() == "a user's"
    assert listing(tmp_path) == [".out.tmp-0000000000000000", "out"]


def test_ownership_file_left_inside_a_result_by_a_killed_run_is_removed(tmp_path):
    write_output(tmp_path / "out", text="new")
    token = "ab" * 8
    (tmp_path / "out" / atomic_module.OWNER_NAME).write_text(json.dumps(
        {"role": "tmp", "name": "out", "token": token, "pid": dead_pid(), "start": None, "host": leftovers._HOST}))
    recover(tmp_path / "out")
    assert listing(tmp_path / "out") == sorted([MARKER_NAME, "result.txt"])


def test_unwritable_parent_message_even_as_root(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic_module.tempfile, "mkstemp", refuse)
    with pytest.raises(ConfigError, match=r"^cannot write to '.*' \(Permission denied\); choose another --out$"):
        check_output_path(tmp_path / "new" / "out", "report", overwrite=False)
    assert listing(tmp_path) == []


def test_a_backup_that_cannot_be_restored_is_kept(tmp_path, monkeypatch):
    backup = owned(tmp_path, "out", "old", dead_pid(), "previous")
    real_rename = Path.rename

    def refuse(self, target):
        if Path(target) == tmp_path / "out":
            raise PermissionError(13, "Permission denied")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse)
    recover(tmp_path / "out")
    assert (backup / "out" / "result.txt").read_text() == "previous" and listing(tmp_path) == [backup.name]
