"""One redaction for messages and the bundle: no `user:token@` survives, nothing else changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cleo.io.buffered_io import BufferedIO

from poetry_plugin_lambda.command import LambdaBundleCommand
from poetry_plugin_lambda.errors import cause_line
from poetry_plugin_lambda.errors import first_line
from poetry_plugin_lambda.errors import redact
from poetry_plugin_lambda.errors import redact_url
from poetry_plugin_lambda.handler_import import HandlerCheck
from poetry_plugin_lambda.pipeline import BundleFailure
from poetry_plugin_lambda.report import BundleReport
from poetry_plugin_lambda.wheels import without_local_urls


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@host/simple/x/?a=1#frag", "https://host/simple/x/?a=1#frag"),
        ("https://tok@host:8443/x.whl#sha256=ab", "https://host:8443/x.whl#sha256=ab"),
        ("git+https://u:p@host/org/repo.git@v1", "git+https://host/org/repo.git@v1"),
        ("https://host/path@v1", "https://host/path@v1"),  # an @ in the path is not user info
        ("/some/local/path", "/some/local/path"),
        # a password with an @, # or ? not percent-encoded: the host follows the last @
        ("http://alice:p@ssword1@127.0.0.1:8080/x.whl", "http://127.0.0.1:8080/x.whl"),
        ("https://alice:pass#word@host/x", "https://host/x"),
        ("https://alice:pa?ss@host/x?b=1", "https://host/x?b=1"),
        # a token in the query: the value of a parameter one of whose words names a secret
        ("https://host/x.whl?private_token=S3cr3t&a=1", "https://host/x.whl?private_token=***&a=1"),
        (
            "https://b.example/x.whl?X-Amz-Algorithm=A&X-Amz-Credential=AKIA/1&X-Amz-Signature=ab&X-Amz-Security-Token=z",
            "https://b.example/x.whl?X-Amz-Algorithm=A&X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
        ),
        ("https://h/x?author=bob&monkey=1&api_key=k&sig=s#frag", "https://h/x?author=bob&monkey=1&api_key=***&sig=***#frag"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_free_text() -> None:
    text = "Failed to clone http://user:s3cret@127.0.0.1:1/r.git, and https://t0k@h/x; mail a@b.c"
    assert redact(text) == "Failed to clone http://127.0.0.1:1/r.git, and https://h/x; mail a@b.c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("All attempts to connect to user:s3cret@127.0.0.1:8080 failed.", "All attempts to connect to 127.0.0.1:8080 failed."),
        ("Creating new session for user:pw@host.example", "Creating new session for host.example"),
        ("(alice:pw@[::1]:80)", "([::1]:80)"),
        ("Creating new session for alice:p@ssword1@127.0.0.1:8080", "Creating new session for 127.0.0.1:8080"),
        ("Adding repository x (http://alice:p@ssword1@127.0.0.1/simple)", "Adding repository x (http://127.0.0.1/simple)"),
        ("clone git@github.com:org/repo and mail a@b.c", "clone git@github.com:org/repo and mail a@b.c"),
        ("Requires-Dist: x @ file:///a/b", "Requires-Dist: x @ file:///a/b"),
    ],
)
def test_redact_a_host_quoted_with_its_credentials(text: str, expected: str) -> None:
    """Poetry's network errors and debug lines quote the host as `user:password@host`, no scheme."""
    assert redact(text) == expected


def test_known_secrets_are_hidden_wherever_they_appear() -> None:
    """A token given as a URL's user name reaches some messages as `TOKEN@host`."""
    from poetry_plugin_lambda.errors import hide
    from poetry_plugin_lambda.errors import secrets_hidden

    with secrets_hidden():
        hide(["ghp_0123456789", "abc"])  # too short to hide everywhere: left to the URL rules
        assert redact("connect to ghp_0123456789@127.0.0.1 failed; abc") == "connect to ***@127.0.0.1 failed; abc"
    assert redact("ghp_0123456789") == "ghp_0123456789"  # forgotten after the run


def test_a_known_password_with_an_at_is_hidden_whole() -> None:
    """The user information ends at the host's last @; a known password is replaced before the
    URL rules cut anything, so no piece of it is left wherever it appears."""
    from poetry_plugin_lambda.errors import hide
    from poetry_plugin_lambda.errors import secrets_hidden

    with secrets_hidden():
        hide(["p@ssword1"])
        assert redact("session for p@ssword1@127.0.0.1 and ssword1") == "session for ***@127.0.0.1 and ssword1"
        metadata = b"Metadata-Version: 2.1\nRequires-Dist: g @ http://alice:p@ssword1@127.0.0.1:8/g.whl?token=p@ssword1\n\nbody\n"
        shipped = without_local_urls(metadata)
        assert shipped == b"Metadata-Version: 2.1\nRequires-Dist: g @ http://127.0.0.1:8/g.whl?token=***\n\nbody\n"
    assert without_local_urls(b"Metadata-Version: 2.1\nProject-URL: Home, https://h/?private_token=abc\n\n") == (
        b"Metadata-Version: 2.1\nProject-URL: Home, https://h/?private_token=***\n\n"
    )
    assert without_local_urls(b"Metadata-Version: 2.1\nProject-URL: Home, https://h/?page=2\n\n") is None


@pytest.mark.parametrize(
    ("output", "cause"),
    [
        ("running egg_info\nerror: PyObjC requires macOS to build\n", "error: PyObjC requires macOS to build"),
        (
            "-- Configuring\nCMake Error at CMakeLists.txt:289 (find_package):\n  By not providing FindArrow.cmake\n"
            "Traceback (most recent call last):\nsubprocess.CalledProcessError: Command '['cmake']' returned non-zero exit status 1.\n",
            "CMake Error at CMakeLists.txt:289 (find_package): By not providing FindArrow.cmake",
        ),
        (
            "src/x.c:1:10: fatal error: Python.h: No such file or directory\nerror: command '/usr/bin/gcc' failed with exit code 1\n",
            "src/x.c:1:10: fatal error: Python.h: No such file or directory",
        ),
        ("Traceback (most recent call last):\nModuleNotFoundError: No module named 'Cython'\n", "ModuleNotFoundError: No module named 'Cython'"),
    ],
)
def test_a_builds_cause_is_the_line_that_says_what_went_wrong(output: str, cause: str) -> None:
    assert cause_line(output) == cause


def test_first_line_is_redacted_and_prefers_the_summary() -> None:
    assert first_line(RuntimeError("x\nValueError: bad http://u:p@h/x")) == "ValueError: bad http://h/x"
    error = RuntimeError("Failed to install poetry-core>=1.0.0.\n\nOutput:\nlog line\n\nError:\n")
    assert first_line(error) == "Failed to install poetry-core>=1.0.0."


METADATA = (
    b"Metadata-Version: 2.3\n"
    b"Name: svc\n"
    b"Version: 0.1.0\n"
    b"Requires-Dist: lib @ file:///home/me/src/lib\n"
    b"Requires-Dist: gitlib @ git+file://None/home/me/src/gitlib@v0.5.0\n"
    b"Requires-Dist: hglib ; python_version >= '3.9' and extra == 'x'\n"
    b"Requires-Dist: private @ https://user:s3cret@host/files/private-1.0-py3-none-any.whl\n"
    b"Requires-Dist: gitdep @ git+https://oauth2:s3cret@host/org/gitdep.git@abc123\n"
    b"Requires-Dist: public @ https://host/files/public-1.0-py3-none-any.whl\n"
    b"Project-URL: Source, https://s3cret@host/org/svc\n"
    b"\n"
    b"A description mentioning https://user:kept@example.invalid/ is left alone.\n"
)


def test_metadata_loses_local_paths_and_credentials() -> None:
    cleaned = without_local_urls(METADATA)
    assert cleaned is not None
    headers, _, body = cleaned.partition(b"\n\n")
    assert b"s3cret" not in headers and b"/home/me" not in headers
    assert b"Requires-Dist: lib\n" in headers
    assert b"Requires-Dist: gitlib\n" in headers  # a local git checkout's path is the machine's too
    assert b"Requires-Dist: private @ https://host/files/private-1.0-py3-none-any.whl\n" in headers
    assert b"Requires-Dist: gitdep @ git+https://host/org/gitdep.git@abc123\n" in headers
    assert b"Requires-Dist: public @ https://host/files/public-1.0-py3-none-any.whl\n" in headers
    assert headers.endswith(b"Project-URL: Source, https://host/org/svc")
    assert body == b"A description mentioning https://user:kept@example.invalid/ is left alone.\n"


def test_clean_metadata_is_left_as_is() -> None:
    assert without_local_urls(b"Name: x\nVersion: 1\nRequires-Dist: y @ https://host/y.whl\n\nbody\n") is None
    assert without_local_urls(b"Name: x\nAuthor-email: A <a@b.example>\n\nuser:pw@host in the body\n") is None


def test_a_known_token_is_hidden_from_a_header_without_an_at_sign() -> None:
    """The quick paths (no `@` in the headers, or only in some lines) never skip a line that
    holds a token the run knows of."""
    from poetry_plugin_lambda.errors import hide
    from poetry_plugin_lambda.errors import secrets_hidden

    metadata = b"Name: x\nAuthor-email: A <a@b.example>\nProject-URL: CI, https://ci.example/?t=tok3n-Secret\n\nbody tok3n-Secret\n"
    with secrets_hidden():
        assert without_local_urls(metadata) is None  # unknown: nothing to hide
        hide(["tok3n-Secret"])
        cleaned = without_local_urls(metadata)
        alone = without_local_urls(b"Name: x\nProject-URL: CI, https://ci.example/?t=tok3n-Secret\n\n")
    assert cleaned == b"Name: x\nAuthor-email: A <a@b.example>\nProject-URL: CI, https://ci.example/?t=***\n\nbody tok3n-Secret\n"
    assert alone == b"Name: x\nProject-URL: CI, https://ci.example/?t=***\n\n"


# -- what the command prints: the reports, text and JSON, of one bundle or several ---------------

LEAK = 'RuntimeError: could not connect to postgres://admin:HuNtEr2@db.internal:5432/app (or https://to"k\\HuNtEr2@h/x)'


def _report(name: str | None = None) -> BundleReport:
    return BundleReport(
        zip=Path("/p/fn.zip"), target_dir=Path("/p/target"), sha256=bytes(32), size=1, unzipped_size=1, files=1,
        runtime="python3.12", architecture="x86_64", layout="bundle", packages=(), largest=(), warnings=(),
        handler_checks=(HandlerCheck("app.handler.handler", "failed", LEAK),), name=name,
    )


def _printed(outcome: BundleReport | list[BundleReport | BundleFailure], fmt: str) -> tuple[str, str]:
    command = LambdaBundleCommand()
    command._io = io = BufferedIO()
    if isinstance(outcome, list):
        assert command._show_many(outcome, fmt) == 1
    else:
        assert command._show(outcome, fmt) == 3
    return io.fetch_output(), io.fetch_error()


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("several", [False, True], ids=["one bundle", "named bundles"])
def test_every_report_the_command_prints_is_redacted(fmt: str, several: bool) -> None:
    """A handler's import error (or a bundle's failure) quoting a URL with credentials: on stdout
    and stderr, in text and in JSON (which stays valid), the user information is gone."""
    outcome: BundleReport | list[BundleReport | BundleFailure] = (
        [_report("api"), BundleFailure("jobs", f"Could not download x: {LEAK}")] if several else _report()
    )
    out, err = _printed(outcome, fmt)
    assert "HuNtEr2" not in out + err and "admin" not in out + err
    assert "postgres://db.internal:5432/app (or https://h/x)" in out
    if fmt == "json" or several:  # stderr repeats what failed (the text report already shows it)
        assert "postgres://db.internal:5432/app (or https://h/x)" in err
    if fmt == "json":
        data = json.loads(out)
        reports = data["bundles"] if several else [data]
        assert "postgres://db.internal:5432/app" in reports[0]["handler_checks"][0]["message"]
        if several:
            assert reports[1] == {"name": "jobs", "error": "Could not download x: " + redact(LEAK)}


def test_a_full_cache_disk_is_not_called_a_network_failure() -> None:
    """A failed write carries no file name: the errno says it was the cache, not the network."""
    import errno

    from poetry_plugin_lambda.errors import download_failure

    message = download_failure("big (1.0)", OSError(errno.ENOSPC, "No space left on device"), "https://u:p@h/x.whl")
    assert message.startswith("Could not store big (1.0) in Poetry's cache: No space left on device.")
    assert "network" not in message
    timeout = download_failure("big (1.0)", OSError(errno.ETIMEDOUT, "timed out"), "https://u:p@h/x.whl")
    assert timeout.startswith("Could not download big (1.0) from https://h/x.whl") and "network" in timeout


def test_a_refusal_that_names_no_file_says_where_a_run_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A full temporary folder (a failed write names no file) must not send the user to check
    only the outputs' disk."""
    import errno
    import tempfile

    from cleo.io.inputs.argv_input import ArgvInput

    def full(self: LambdaBundleCommand) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LambdaBundleCommand, "_bundle", full)
    command = LambdaBundleCommand()
    command._io = io = BufferedIO(ArgvInput(["poetry"]))
    io.input.bind(command.definition)
    assert command.handle() == 1
    error = io.fetch_error()
    assert "Could not bundle the project: No space left on device" in error
    assert f"scratch folder in {tempfile.gettempdir()} (set TMPDIR" in error
