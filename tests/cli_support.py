"""Helpers for the tests of the ``kvfs`` command: running it, in-process or as a process.

Until :mod:`kvfs.url` exists, :func:`install_url_shim` gives ``kvfs.open_store`` a minimal
stand-in for the URLs these tests use (a directory path, ``file://``, ``sqlite:///``,
``s3://bucket/prefix`` and ``memory://``); once it exists the real one is used.

S3 stores find the moto server through boto3's own environment variables
(``AWS_ENDPOINT_URL_S3`` and credentials, see :func:`s3_environment`), so the test URLs
are plain ``s3://bucket/prefix`` whatever query syntax ``kvfs.url`` settles on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import kvfs

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def has_url_module() -> bool:
    """Whether the real :func:`kvfs.open_store` (``kvfs/url.py``) is there."""
    return importlib.util.find_spec("kvfs.url") is not None


def shim_open_store(url: str, **options: object) -> kvfs.KeyValueStore:
    """A stand-in for :func:`kvfs.open_store`, for the schemes these tests use."""
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        from kvfs.fs import FilesystemStore

        return FilesystemStore(parts.path if parts.scheme else url)
    if parts.scheme == "memory":
        from kvfs.memory import DictStore

        return DictStore()
    if parts.scheme == "sqlite":
        from kvfs.db.sql import SQLAlchemyStore

        return SQLAlchemyStore.from_url(url)
    if parts.scheme == "s3":
        from kvfs.net.boto3store import Boto3Store

        prefix = parts.path.lstrip("/")
        return Boto3Store(parts.netloc, prefix + "/" if prefix and not prefix.endswith("/") else prefix)
    raise ValueError(f"unknown store URL scheme {parts.scheme!r}")


def install_url_shim() -> None:
    """Make ``kvfs.open_store`` the shim, unless the real one exists."""
    if not has_url_module():
        kvfs.open_store = shim_open_store  # type: ignore[attr-defined]


def kvfs_command() -> list[str]:
    """The argv prefix that runs ``kvfs`` as a separate process (with the shim if needed)."""
    if has_url_module():
        return [sys.executable, "-m", "kvfs.cli"]
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); import cli_support; "
        "cli_support.install_url_shim(); from kvfs.cli.main import main; main()"
    )
    return [sys.executable, "-c", code]


def s3_environment(endpoint: str) -> dict[str, str]:
    """Environment variables that point boto3 (and so ``s3://`` stores) at *endpoint*."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "kvfs-test",
        "AWS_SECRET_ACCESS_KEY": "kvfs-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a fresh name on the S3 server at *endpoint*; return its name."""
    import boto3

    name = f"kvfs-cli-{uuid.uuid4().hex[:12]}"
    env = s3_environment(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=name)
    return name


def run_kvfs(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``kvfs ARGS`` as a process, capturing stdout and stderr (bytes)."""
    return subprocess.run(
        [*kvfs_command(), *args],
        input=input,
        capture_output=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=timeout,
    )


def use_url_shim(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """In-process: give ``kvfs.open_store`` the shim for this test, unless the real one exists."""
    if not has_url_module():
        monkeypatch.setitem(vars(kvfs), "open_store", shim_open_store)


def invoke(args: Sequence[str], input: bytes | str | None = None):  # type: ignore[no-untyped-def]
    """Run ``kvfs ARGS`` in this process with click's CliRunner; returns its Result."""
    from click.testing import CliRunner

    from kvfs.cli.main import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
