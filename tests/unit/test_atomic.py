"""atomic: the one helper behind every file and folder the plugin writes."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from pathlib import Path

import pytest

from poetry_plugin_lambda.atomic import Staged
from poetry_plugin_lambda.atomic import copy_atomic
from poetry_plugin_lambda.atomic import discard_unfinished
from poetry_plugin_lambda.atomic import remove_stale
from poetry_plugin_lambda.atomic import write_atomic


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "out" / "entry"
    write_atomic(final, b"first")
    assert final.read_bytes() == b"first" and final.stat().st_mode & 0o777 == 0o644

    class Boom(Exception):
        pass

    with pytest.raises(Boom), Staged(final) as staged:
        os.write(staged.fd, b"half of the second")
        raise Boom
    assert final.read_bytes() == b"first"
    assert _listing(final.parent) == ["entry"]  # the temporary is gone


def test_copy_and_modes(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"x" * 3_000_000)
    copy_atomic(source, tmp_path / "copy", mode=0o755)
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
    assert (tmp_path / "copy").stat().st_mode & 0o777 == 0o755


def test_concurrent_writers_never_share_a_temporary(tmp_path: Path) -> None:
    final = tmp_path / "shared"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for _ in range(20):
                write_atomic(final, str(n).encode() * 1000)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    data = final.read_bytes()
    assert len(set(data)) == 1 and len(data) == 1000  # one writer's whole content
    assert _listing(tmp_path) == ["shared"]


def test_stale_temporaries_go_live_ones_stay(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    dead = tmp_path / ".entry.tmp-dead"
    dead.write_bytes(b"killed")
    dead_dir = tmp_path / ".entry.tmp-deaddir"
    (dead_dir / "sub").mkdir(parents=True)
    live = tmp_path / ".entry.tmp-live"
    live.write_bytes(b"writing")
    other = tmp_path / ".other.tmp-dead"
    other.write_bytes(b"not ours")
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        remove_stale(final)
    finally:
        os.close(fd)
    assert _listing(tmp_path) == [".entry.tmp-live", ".other.tmp-dead"]


def test_staged_folder_commits_and_uncommits(tmp_path: Path) -> None:
    final = tmp_path / "target"
    staged = Staged(final, folder=True)
    (staged.path / "file.py").write_text("X = 1\n")
    staged.commit()
    assert (final / "file.py").read_text() == "X = 1\n"
    staged.uncommit()
    assert not final.exists()
    staged.discard()
    assert _listing(tmp_path) == []


def test_a_file_where_the_folder_should_be_is_said_plainly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError) as caught:
        write_atomic(tmp_path / "file" / "entry", b"data")
    assert caught.value.filename == str(tmp_path / "file")


def test_names_of_writers_killed_before_their_lock_go_after_a_grace_period(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    old = tmp_path / ".entry.new-old"
    old.write_bytes(b"killed between creating and locking")
    os.utime(old, (1_000_000_000, 1_000_000_000))
    young = tmp_path / ".entry.new-young"  # maybe a live writer, about to lock and rename it
    young.write_bytes(b"")
    remove_stale(final)
    assert _listing(tmp_path) == [".entry.new-young"]


# -- Ctrl-C at the worst moment -----------------------------------------------------------------


def _ctrl_c_after(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """`os.<name>` does its work, then a Ctrl-C arrives before its result is used: the moment
    Python raises KeyboardInterrupt at when a signal comes during a system call."""
    real = getattr(os, name)

    def then_interrupted(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)
        signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(os, name, then_interrupted)


@pytest.mark.parametrize("call", ["open", "rename", "mkdir"])
@pytest.mark.parametrize("folder", [False, True], ids=["file", "folder"])
def test_ctrl_c_while_a_temporary_is_made_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, folder: bool
) -> None:
    final = tmp_path / "entry"
    final.write_bytes(b"previous")
    if folder:
        final.unlink()
    _ctrl_c_after(monkeypatch, call)
    try:
        staged = Staged(final, folder=folder)
    except KeyboardInterrupt:
        pass
    else:  # the call was not on this path (a file is not made with mkdir): an ordinary temporary
        staged.discard()
    monkeypatch.undo()
    discard_unfinished()  # what the command does when a run ends
    assert _listing(tmp_path) == ([] if folder else ["entry"])
    assert folder or final.read_bytes() == b"previous"


def test_temporaries_a_run_did_not_finish_are_removed_when_it_ends(tmp_path: Path) -> None:
    kept = Staged(tmp_path / "committed")
    os.write(kept.fd, b"done")
    kept.commit()
    forgotten = Staged(tmp_path / "forgotten")  # as if a Ctrl-C came before its `with`
    folder = Staged(tmp_path / "tree", folder=True)
    (folder.path / "file").write_bytes(b"x")
    discard_unfinished()
    assert _listing(tmp_path) == ["committed"]
    assert not forgotten.path.exists() and not folder.path.exists()
    discard_unfinished()  # nothing left: nothing to do


def test_a_killed_runs_scratch_folder_is_removed_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL (or SIGTERM, which Python does not turn into an exception) leaves the run's scratch
    folder in the temporary folder: the next run removes it, never one a live run holds."""
    import tempfile

    from poetry_plugin_lambda.atomic import scratch_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    left = tmp_path / ".lambda-bundle.tmp-deadbeef0000"
    (left / "build-x").mkdir(parents=True)
    (left / "build-x" / "x.whl").write_bytes(b"x")
    with scratch_folder("lambda-bundle") as live:
        assert not left.exists() and live.path.is_dir()
        with scratch_folder("lambda-bundle") as other:  # a second run beside it
            assert live.path.is_dir() and other.path != live.path
        (live.path / "work").write_text("x")
    assert list(tmp_path.iterdir()) == []
