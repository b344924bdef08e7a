"""Helpers for the tests of the ``kvfs`` command: running it, and S3 buckets of their own.

The command opens stores with the real :func:`kvfs.open_store`. An ``s3://`` store finds
its server either from the URL (``?endpoint_url=...``, credentials as ``KEY:SECRET@``,
see :func:`moto_store_url`) or from boto3's own environment variables (see
:func:`s3_environment`); the tests use both.

The moto server keeps its buckets in memory, and other test files restart it: a test
never relies on a bucket it did not make itself (:func:`fresh_bucket`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from servers import moto_url, require_server

ROOT = Path(__file__).resolve().parent.parent

#: moto accepts any credentials; these are the ones the tests give.
MOTO_KEY, MOTO_SECRET = "kvfs-test", "kvfs-test-secret"


def kvfs_command() -> list[str]:
    """The argv prefix that runs ``kvfs`` as a separate process."""
    return [sys.executable, "-m", "kvfs.cli"]


def s3_environment(endpoint: str) -> dict[str, str]:
    """boto3's environment variables that point ``s3://`` stores without options at *endpoint*."""
    return {
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": MOTO_KEY,
        "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def moto_store_url(bucket: str, prefix: str = "") -> str:
    """An ``s3://`` URL of *bucket*/*prefix* on moto, endpoint and credentials in the URL."""
    return f"s3://{MOTO_KEY}:{MOTO_SECRET}@{bucket}/{prefix}?endpoint_url={moto_url()}"


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client of the S3 server at *endpoint*, to look behind the command."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name="us-east-1",
    )


@contextmanager
def fresh_bucket(prefix: str = "kvfs-cli") -> Iterator[str]:
    """A new bucket with a unique name on moto for one test; emptied and removed after it.

    Skips (fails under ``CI=true``) when moto does not answer.
    """
    require_server("moto")
    client = s3_client(moto_url())
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    client.close()
    try:
        yield name
    finally:
        remove_bucket(name)


def remove_bucket(name: str) -> None:
    """Delete bucket *name* on moto and everything in it; a bucket that is not there is fine."""
    from botocore.exceptions import ClientError

    client = s3_client(moto_url())
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
        client.delete_bucket(Bucket=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise
    finally:
        client.close()


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
        check=False,
    )


def invoke(args: Sequence[str], input: bytes | str | None = None):  # type: ignore[no-untyped-def]
    """Run ``kvfs ARGS`` in this process with click's CliRunner; returns its Result."""
    from click.testing import CliRunner

    from kvfs.cli.main import cli

    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
