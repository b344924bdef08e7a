"""Bad input of every kind: the documented exit code and one line on stderr, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_support import run_kvfs

from kvfs.cli.errors import (
    EXIT_FAILED,
    EXIT_MISSING_EXTRA,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    display_url,
)
from kvfs.fs import FilesystemStore


@pytest.fixture
def store(tmp_path):
    store = FilesystemStore(tmp_path / "store")
    store.put("present", b"here")
    store.put("dir/inside", b"x")
    return store


CASES = {
    "missing key": (["cat", "{store}", "ghost/key"], EXIT_NOT_FOUND, "ghost/key"),
    "missing key for stat": (["stat", "{store}", "ghost"], EXIT_NOT_FOUND, "ghost"),
    "invalid key": (["cat", "{store}", "bad//key"], EXIT_USAGE, "bad//key"),
    "key climbing out": (["get", "{store}", "../etc/passwd", "-"], EXIT_USAGE, "../etc/passwd"),
    "unknown scheme": (["ls", "nope://where/x"], EXIT_USAGE, "nope://where/x"),
    "not a URL": (["cat", "c:data", "k"], EXIT_USAGE, "c:data"),
    "unknown parameter": (["ls", "memory://?colour=blue"], EXIT_USAGE, "colour"),
    "bad flag value": (["ls", "file://{store}?readonly=maybe"], EXIT_USAGE, "readonly"),
    "no bucket": (["ls", "s3:///prefix"], EXIT_USAGE, "no bucket"),
    "unknown option": (["ls", "--bogus", "{store}"], EXIT_USAGE, "--bogus"),
    "unknown verb": (["frobnicate"], EXIT_USAGE, "frobnicate"),
    "missing argument": (["cat", "{store}"], EXIT_USAGE, "KEY"),
    "missing local file": (["put", "{store}", "k", "{tmp}/no-such-file"], EXIT_USAGE, "no-such-file"),
    "keys and prefix": (["cp", "{store}", "{tmp}/d", "present", "--prefix", "dir/"], EXIT_USAGE, "--prefix"),
    "bad jobs": (["cp", "--jobs", "0", "{store}", "{tmp}/d"], EXIT_USAGE, "--jobs"),
    "empty source": (["sync", "{tmp}/void", "{tmp}/d"], EXIT_NOT_FOUND, "void"),
    "nothing under prefix": (["ls", "{store}", "nothing/"], EXIT_NOT_FOUND, "nothing/"),
    "rm -r off a terminal": (["rm", "-r", "{store}", "dir"], EXIT_USAGE, "--yes"),
    "unopenable database": (["ls", "sqlite:///{tmp}/no/such/dir/x.db"], EXIT_FAILED, "x.db"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_its_exit_code_and_one_line(case, store, tmp_path):
    args, code, named = CASES[case]
    args = [arg.format(store=store.root, tmp=tmp_path) for arg in args]
    result = run_kvfs(args, input=b"")
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("kvfs")
    assert named.format(tmp=tmp_path) in stderr


def test_debug_shows_the_traceback(store):
    result = run_kvfs(["--debug", "cat", store.root, "ghost"])
    assert result.returncode == EXIT_NOT_FOUND
    assert b"Traceback" in result.stderr and b"KeyNotFoundError" in result.stderr


@pytest.mark.parametrize(
    ("blocked", "url", "extra"),
    [("boto3", "s3://bucket/prefix", "s3"), ("google.cloud.storage", "gs://bucket/prefix", "gcs")],
)
def test_a_missing_package_exits_4_naming_the_extra(blocked, url, extra):
    # As if the package were not installed: the import fails inside the real open_store.
    code = f"import sys; sys.modules[{blocked!r}] = None; from kvfs.cli.main import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "ls", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == EXIT_MISSING_EXTRA, result.stderr
    assert f"pip install 'kvfs[{extra}]'" in result.stderr and url in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_url_is_named_once_in_its_error():
    result = run_kvfs(["ls", "nope://where/x"])
    assert result.stderr.decode().count("nope://where/x") == 1


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("nope://alice:hunter2@host/db?secret_key=s3cr3t&region=eu", EXIT_USAGE),
        ("s3://alice:hunter2@bucket/p?create=maybe&api_key=s3cr3t", EXIT_USAGE),
        ("s3://alice:hunter2@bucket/p?sessiontoken=s3cr3t", EXIT_USAGE),
        ("redis://alice:hunter2@127.0.0.1:9/0?password=s3cr3t&socket_connect_timeout=2", EXIT_FAILED),
    ],
)
def test_secrets_never_appear_in_messages(url, code):
    result = run_kvfs(["--debug", "ls", url], timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert "alice:***@" in last
    assert "hunter2" not in last and "s3cr3t" not in last


def test_display_url_hides_only_secrets():
    assert display_url("s3://b/p?endpoint_url=http://h:1&region=eu") == "s3://b/p?endpoint_url=http://h:1&region=eu"
    assert display_url("redis://h/0?hmac_secret_env=NAME&sslkey=/k.pem") == "redis://h/0?hmac_secret_env=NAME&sslkey=***"
    assert display_url("/plain/path") == "/plain/path"
    assert display_url("redis://h:6379/0") == "redis://h:6379/0"
    assert display_url("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert display_url("s3://b/p?aws_secret_access_key=x&endpoint_url=http://h:1") == (
        "s3://b/p?aws_secret_access_key=***&endpoint_url=http://h:1"
    )
