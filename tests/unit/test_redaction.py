"""One redaction for messages and the bundle: no `user:token@` survives, nothing else changes."""

from __future__ import annotations

import pytest

from poetry_plugin_lambda.errors import first_line
from poetry_plugin_lambda.errors import redact
from poetry_plugin_lambda.errors import redact_url
from poetry_plugin_lambda.wheels import without_local_urls


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@host/simple/x/?a=1#frag", "https://host/simple/x/?a=1#frag"),
        ("https://tok@host:8443/x.whl#sha256=ab", "https://host:8443/x.whl#sha256=ab"),
        ("git+https://u:p@host/org/repo.git@v1", "git+https://host/org/repo.git@v1"),
        ("https://host/path@v1", "https://host/path@v1"),  # an @ in the path is not user info
        ("/some/local/path", "/some/local/path"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_free_text() -> None:
    text = "Failed to clone http://user:s3cret@127.0.0.1:1/r.git, and https://t0k@h/x; mail a@b.c"
    assert redact(text) == "Failed to clone http://127.0.0.1:1/r.git, and https://h/x; mail a@b.c"


def test_first_line_is_redacted_and_prefers_the_summary() -> None:
    assert first_line(RuntimeError("x\nValueError: bad http://u:p@h/x")) == "ValueError: bad http://h/x"
    error = RuntimeError("Failed to install poetry-core>=1.0.0.\n\nOutput:\nlog line\n\nError:\n")
    assert first_line(error) == "Failed to install poetry-core>=1.0.0."


METADATA = (
    b"Metadata-Version: 2.3\n"
    b"Name: svc\n"
    b"Version: 0.1.0\n"
    b"Requires-Dist: lib @ file:///home/me/src/lib\n"
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
    assert b"Requires-Dist: private @ https://host/files/private-1.0-py3-none-any.whl\n" in headers
    assert b"Requires-Dist: gitdep @ git+https://host/org/gitdep.git@abc123\n" in headers
    assert b"Requires-Dist: public @ https://host/files/public-1.0-py3-none-any.whl\n" in headers
    assert headers.endswith(b"Project-URL: Source, https://host/org/svc")
    assert body == b"A description mentioning https://user:kept@example.invalid/ is left alone.\n"


def test_clean_metadata_is_left_as_is() -> None:
    assert without_local_urls(b"Name: x\nVersion: 1\nRequires-Dist: y @ https://host/y.whl\n\nbody\n") is None
