"""Faults through the real command: kills while writing, concurrent runs, a failing index, a cache
that cannot be used. Every failure must be one clean message, never a traceback, and never a
partial ZIP at --output."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import Bundled
from tests.e2e.helpers import bundle
from tests.e2e.helpers import dir_files
from tests.e2e.helpers import zip_files
from tests.fixtures.index import LoopbackIndex
from tests.fixtures.projects import poetry_env
from tests.fixtures.projects import poetry_lock
from tests.fixtures.projects import write_project
from tests.fixtures.wheelfactory import build_wheel

RUNTIME = ("--runtime", "python3.11")
BIG_MEMBER = "bigdata/blob.bin"
BIG_SIZE = 40_000_000  # stored in the wheel, so writing the ZIP deflates it: ~1 s of work
USER, PASSWORD = "lambda-user", "pa55-Wurd-7c1e9f0b"


def _stored_big_wheel(dest: Path) -> Path:
    """A wheel with a large random member stored (not deflated), like a data blob in a package."""
    data = random.Random(2024).randbytes(BIG_SIZE)
    built = build_wheel(dest / "tmp", "bigdata", "1.0", files={"bigdata/__init__.py": "", BIG_MEMBER: data})
    final = dest / built.name
    with zipfile.ZipFile(built) as src, zipfile.ZipFile(final, "w") as out:
        for info in src.infolist():
            payload = src.read(info)
            if info.filename == BIG_MEMBER:
                info.compress_type = zipfile.ZIP_STORED
            out.writestr(info, payload)
    shutil.rmtree(dest / "tmp")
    return final


def _temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.is_dir() for p in folder.iterdir() if ".tmp-" in p.name]


def _assert_clean_failure(result: Bundled, *needles: str) -> str:
    """A non-zero exit, no traceback, and every needle in stderr; returns stderr."""
    stdout, stderr = result.stdout, result.stderr
    assert result.returncode != 0, stdout + stderr
    assert "Traceback" not in stdout + stderr, stderr
    for needle in needles:
        assert needle in stderr, stderr
    return stderr


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# -- a world with a big wheel --------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("faults")
    index_root = base / "index"
    index_root.mkdir()
    _stored_big_wheel(index_root)
    build_wheel(index_root, "small", "1.0")
    with LoopbackIndex(index_root) as index:
        repo = base / "repo"
        write_project(repo / "service", "service", dependencies={"bigdata": "^1.0", "small": "^1.0"},
                      index_url=index.url)
        cache = base / "cache"
        cache.mkdir()
        poetry_lock(repo / "service", cache)
        out = repo / "service" / "out" / "fn.zip"
        first = bundle(repo / "service", cache, *RUNTIME, "--output", str(out))
        assert first.returncode == 0, first.stderr
        yield {"repo": repo, "cache": cache, "index": index, "zip": out.read_bytes()}


@pytest.fixture
def big_service(big_world: dict, tmp_path: Path) -> Path:
    """A private copy of the project, with the earlier run's ZIP and target dir."""
    repo = tmp_path / "repo"
    shutil.copytree(big_world["repo"], repo)
    return repo / "service"


def _interruptible() -> None:
    """Ctrl-C as in a terminal: a test runner started in the background (`cmd &` in a script)
    hands its children SIGINT ignored, and Python then never turns it into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(service: Path, cache: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "poetry", "lambda-bundle", "--no-ansi", *args],
        cwd=service,
        env=poetry_env(cache),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,  # noqa: PLW1509 - only resets a signal, before exec
    )


def _wait_for_temporary(proc: subprocess.Popen[str], folder: Path, prefix: str, timeout: float = 120) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(prefix + "*")) if folder.is_dir() else []
        if found:
            return found[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before writing {prefix}*:\n{out}\n{err}")
        time.sleep(0.002)
    proc.kill()
    proc.communicate()
    pytest.fail(f"no {prefix}* appeared in {folder}")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["KILL", "TERM", "INT"])
def test_run_killed_while_writing_keeps_the_previous_zip(
    big_world: dict, big_service: Path, sig: signal.Signals
) -> None:
    out = big_service / "out" / "fn.zip"
    target_parent = big_service / "build" / "lambda"
    before = out.read_bytes()
    assert before == big_world["zip"]

    proc = _start(big_service, big_world["cache"], *RUNTIME, "--output", str(out))
    temporary = _wait_for_temporary(proc, out.parent, ".fn.zip.tmp-")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)

    assert out.read_bytes() == before, "a killed run changed the ZIP at --output"
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
    if sig == signal.SIGINT:
        assert proc.returncode == 130, (stdout, stderr)
        assert "Traceback" not in stdout + stderr
        lines = _error_lines(stderr)
        assert len(lines) == 1, stderr
        assert "Interrupted" in lines[0]
        assert not temporary.exists(), "an interrupted run left its temporary ZIP behind"
        assert not _temporaries(out.parent), _temporaries(out.parent)
    else:
        assert proc.returncode == -sig, (proc.returncode, stdout, stderr)

    again = bundle(big_service, big_world["cache"], *RUNTIME, "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == before
    assert not _temporaries(out.parent, target_parent), "stale temporaries survived the next run"
    assert dir_files(target_parent / "python3.11-x86_64") == zip_files(out)


def _leftovers(*folders: Path) -> list[Path]:
    """Temporaries of any writer (young `.new-` names too), anywhere under `folders`."""
    return [p for folder in folders if folder.is_dir() for p in folder.rglob("*") if ".tmp-" in p.name or ".new-" in p.name]


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_a_run(big_world: dict, big_service: Path) -> None:
    """Ctrl-C at moments spread over a whole run (start-up, lock, fetch, staging, writing,
    committing): once the command runs, every run ends in one line and exit 130 (or finishes);
    the ZIP and the target dir always agree, and no temporary is left in the outputs' folders or
    the cache."""
    out = big_service / "out" / "fn.zip"
    target_parent = big_service / "build" / "lambda"
    started = time.monotonic()
    timed = bundle(big_service, big_world["cache"], *RUNTIME, "--output", str(out))
    assert timed.returncode == 0, timed.stderr
    length = time.monotonic() - started
    chance = random.Random(17)
    codes = []
    for step in range(10):
        proc = _start(big_service, big_world["cache"], *RUNTIME, "--output", str(out))
        time.sleep(length * (step + chance.random()) / 10)
        proc.send_signal(signal.SIGINT)
        code, stdout, stderr = _finish(proc)
        codes.append(code)
        if code == -signal.SIGINT:  # during Python's and Poetry's start-up: as for any command
            assert "poetry_plugin_lambda/command.py" not in stderr and "Interrupted" not in stderr, stderr
        elif code == 1 and not stdout + stderr:  # cleo's dispatch, before the command runs: as for any command
            pass
        else:
            assert code in (0, 130), (code, stdout, stderr)
            assert "Traceback" not in stdout + stderr, stderr
        if code == 130:
            lines = _error_lines(stderr)
            assert len(lines) == 1 and "Interrupted" in lines[0], stderr
        assert out.read_bytes() == big_world["zip"]
        assert dir_files(target_parent / "python3.11-x86_64") == zip_files(out)
        assert not _leftovers(out.parent, target_parent, big_world["cache"]), (step, stderr)
    assert 130 in codes, codes


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


@pytest.mark.slow
@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "replacing"])
def test_two_runs_at_once_on_the_same_output(big_world: dict, big_service: Path, fresh: bool) -> None:
    out = big_service / "out" / "fn.zip"
    target_parent = big_service / "build" / "lambda"
    if fresh:
        shutil.rmtree(out.parent)
        shutil.rmtree(big_service / "build")
    procs = [_start(big_service, big_world["cache"], *RUNTIME, "--output", str(out)) for _ in range(2)]
    results = [_finish(p) for p in procs]
    successes = [r for r in results if r[0] == 0]
    assert successes, results
    for code, stdout, stderr in results:
        if code != 0:  # one may lose a race, but cleanly
            assert "Traceback" not in stdout + stderr, stderr
            assert len(_error_lines(stderr)) == 1, stderr
    assert out.read_bytes() == big_world["zip"]
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
    assert dir_files(target_parent / "python3.11-x86_64") == zip_files(out)
    if len(successes) == 2:
        assert not _temporaries(out.parent, target_parent)
    else:  # the loser's leftovers (if any) go with the next run
        again = bundle(big_service, big_world["cache"], *RUNTIME, "--output", str(out))
        assert again.returncode == 0, again.stderr
        assert not _temporaries(out.parent, target_parent)


# -- small worlds: one index per test, so faults never leak between tests ----------------------------


@contextlib.contextmanager
def small_world(
    base: Path, *, auth: tuple[str, str] | None = None, files: dict | None = None
) -> Iterator[tuple[Path, LoopbackIndex]]:
    """A served index (tiny-dep, leaf) and a project locked against it (with credentials if
    the index wants them)."""
    index_root = base / "index"
    index_root.mkdir(parents=True)
    build_wheel(index_root, "tiny-dep", "1.0", files=files)
    build_wheel(index_root, "leaf", "2.0")
    creds = {}
    if auth is not None:
        creds = {"POETRY_HTTP_BASIC_LOOPBACK_USERNAME": auth[0], "POETRY_HTTP_BASIC_LOOPBACK_PASSWORD": auth[1]}
    with LoopbackIndex(index_root, auth=auth) as index:
        project = write_project(base / "service", "service", dependencies={"tiny-dep": "^1.0", "leaf": "^2.0"},
                                index_url=index.url)
        lock_cache = base / "lock-cache"
        lock_cache.mkdir()
        poetry_lock(project, lock_cache, extra_env=creds)
        yield project, index


def _empty_cache(tmp_path: Path, name: str = "empty-cache") -> Path:
    cache = tmp_path / name
    cache.mkdir()
    return cache


@pytest.mark.slow  # Poetry retries a refused connection 5 times (7.5 s of back-off)
def test_index_unreachable(tmp_path: Path) -> None:
    with small_world(tmp_path) as (project, index):
        url = index.url
        index.stop()
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME)
    stderr = _assert_clean_failure(result)
    assert "leaf" in stderr or "tiny-dep" in stderr, stderr
    assert f"127.0.0.1:{url.split(':')[2].split('/')[0]}" in stderr, stderr
    assert len(_error_lines(stderr)) == 1, stderr
    assert not list(project.rglob("*.zip"))


@pytest.mark.parametrize("retries", ["2", None], ids=["max-retries-2", "default"])
def test_one_503_is_retried(tmp_path: Path, retries: str | None) -> None:
    """Poetry's session retries 5xx answers (up to 5 times, whatever requests.max-retries says)."""
    env = {"POETRY_REQUESTS_MAX_RETRIES": retries} if retries else {}
    with small_world(tmp_path) as (project, index):
        start = len(index.requests)
        index.fail_next(503, count=1)
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME, "--format", "json", extra_env=env)
        assert result.returncode == 0, result.stderr
        assert {p["name"] for p in result.report["packages"]} == {"leaf", "tiny-dep", "service"}
        seen = index.requests[start:]
    assert len(seen) > len(set(seen)), f"the failed request was not repeated: {seen}"


@pytest.mark.slow  # 5 retries with back-off
def test_many_503s_fail_cleanly_naming_the_status(tmp_path: Path) -> None:
    with small_world(tmp_path) as (project, index):
        index.fail_next(503, count=50)
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME,
                        extra_env={"POETRY_REQUESTS_MAX_RETRIES": "2"})
    stderr = _assert_clean_failure(result, "503")
    assert "leaf" in stderr or "tiny-dep" in stderr, stderr
    assert len(_error_lines(stderr)) == 1, stderr


@pytest.mark.slow  # 5 retries with back-off
def test_503_on_the_wheel_download(tmp_path: Path) -> None:
    """Pages are served, every file download answers 503."""
    with small_world(tmp_path) as (project, index):
        record = index._record

        def fail_files(path: str) -> int | None:
            record(path)
            return 503 if path.startswith("/files/") else None

        index._record = fail_files  # type: ignore[method-assign]
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME)
    stderr = _assert_clean_failure(result, "503")
    assert "leaf (2.0)" in stderr or "tiny-dep (1.0)" in stderr, stderr
    assert "/files/" in stderr  # the URL of the download, not of the page
    assert len(_error_lines(stderr)) == 1, stderr


AUTH_BUG = (
    "product bug: Poetry's HTTPRepository._get_response turns a 401/403 on the simple page into"
    " 'not found' (a warning, no links), and fetch.Fetcher._from_index then reports 'The source"
    " of X no longer offers <file> ... Run `poetry lock`', blaming the lock, not the credentials"
)


def test_401_without_credentials_says_credentials(tmp_path: Path) -> None:
    with small_world(tmp_path, auth=(USER, PASSWORD)) as (project, _):
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME)
    stderr = _assert_clean_failure(result, "credentials")
    assert "leaf" in stderr or "tiny-dep" in stderr, stderr
    assert "poetry lock" not in stderr, stderr


def test_401_with_credentials_succeeds_and_never_prints_the_password(tmp_path: Path) -> None:
    creds = {"POETRY_HTTP_BASIC_LOOPBACK_USERNAME": USER, "POETRY_HTTP_BASIC_LOOPBACK_PASSWORD": PASSWORD}
    with small_world(tmp_path, auth=(USER, PASSWORD)) as (project, _):
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME, "-vvv", extra_env=creds)
    assert result.returncode == 0, result.stderr
    assert "Downloading" in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    for path in (project / "build").rglob("*"):
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path
    for data in zip_files(project / "dist" / "lambda" / "service-0.1.0-python3.11-x86_64.zip").values():
        assert PASSWORD.encode() not in data


def test_wrong_credentials_say_credentials_and_hide_the_password(tmp_path: Path) -> None:
    wrong = "not-the-pa55word-31337"
    creds = {"POETRY_HTTP_BASIC_LOOPBACK_USERNAME": USER, "POETRY_HTTP_BASIC_LOOPBACK_PASSWORD": wrong}
    with small_world(tmp_path, auth=(USER, PASSWORD)) as (project, _):
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME, "-vvv", extra_env=creds)
    _assert_clean_failure(result, "credentials")
    assert wrong not in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_cache_folder_without_permission(tmp_path: Path) -> None:
    with small_world(tmp_path) as (project, _):
        cache = _empty_cache(tmp_path)
        artifacts = cache / "artifacts"
        artifacts.mkdir()
        artifacts.chmod(0)
        try:
            if os.access(artifacts, os.W_OK) or os.access(artifacts, os.R_OK):
                pytest.skip("running as root: permissions are not enforced")
            result = bundle(project, cache, *RUNTIME)
        finally:
            artifacts.chmod(0o755)
    stderr = _assert_clean_failure(result)
    assert "ermission" in stderr, stderr
    assert len(_error_lines(stderr)) == 1, stderr


def test_cache_folder_that_is_a_file(tmp_path: Path) -> None:
    """What root can test: the artifact cache path exists but is a file."""
    with small_world(tmp_path) as (project, _):
        cache = _empty_cache(tmp_path)
        (cache / "artifacts").write_text("not a folder\n")
        result = bundle(project, cache, *RUNTIME)
    stderr = _assert_clean_failure(result)
    assert "leaf" in stderr or "tiny-dep" in stderr, stderr
    assert str(cache / "artifacts") in stderr, stderr
    assert len(_error_lines(stderr)) == 1, stderr
    assert (cache / "artifacts").read_text() == "not a folder\n"


def test_cache_error_advice_does_not_blame_the_network(tmp_path: Path) -> None:
    with small_world(tmp_path) as (project, _):
        cache = _empty_cache(tmp_path)
        (cache / "artifacts").write_text("not a folder\n")
        result = bundle(project, cache, *RUNTIME)
    stderr = _assert_clean_failure(result)
    assert "network" not in stderr, stderr


def test_wheel_with_a_dot_segment_fails_cleanly(tmp_path: Path) -> None:
    files = {"tiny_dep/__init__.py": "", "tiny_dep/./odd.py": "X = 1\n"}
    with small_world(tmp_path, files=files) as (project, _):
        result = bundle(project, _empty_cache(tmp_path), *RUNTIME)
    if result.returncode == 0:
        return  # bundling it under a clean path is fine too
    _assert_clean_failure(result, "tiny_dep-1.0-py3-none-any.whl")
    assert not (project / "build" / "lambda").exists(), "the target dir was written for a refused bundle"
