"""Where the test servers are, and how tests check, stop and restart them.

The servers are real processes started by ``scripts/services start`` (``scripts/test`` does that and exports
the ``KVFS_TEST_*`` variables read here). Without the variables the fixed ports of ``scripts/services`` are
assumed, so a developer who ran ``scripts/services start`` can run ``pytest`` directly.

A test that needs a server calls :func:`require_server` first: when nothing answers, the test is skipped
with the reason, except in CI (``CI=true``), where a missing server is a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "scripts" / "services"

DEFAULT_URLS = {
    "redis": "redis://127.0.0.1:24010/0",
    "postgres": "postgresql+psycopg://kvfs@127.0.0.1:24020/kvfs",
    "moto": "http://127.0.0.1:24030",
    "seaweed": "http://127.0.0.1:24040",
    "gcs": "http://127.0.0.1:24050",
    "azurite": "http://127.0.0.1:24060/devstoreaccount1",
    "memcached": "memcached://127.0.0.1:24070",
}
_ENV = {
    "redis": "KVFS_TEST_REDIS_URL",
    "postgres": "KVFS_TEST_POSTGRES_URL",
    "moto": "KVFS_TEST_MOTO_URL",
    "seaweed": "KVFS_TEST_SEAWEED_URL",
    "gcs": "KVFS_TEST_GCS_URL",
    "azurite": "KVFS_TEST_AZURE_URL",
    "memcached": "KVFS_TEST_MEMCACHED_URL",
}
_ALIASES = {
    "postgresql": "postgres",
    "seaweedfs": "seaweed",
    "fake-gcs": "gcs",
    "fake-gcs-server": "gcs",
    "azure": "azurite",
    "memcache": "memcached",
}
# Azurite's well-known development account (public, the same in every Azurite).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

SERVICE_NAMES = tuple(DEFAULT_URLS)


def _canon(name: str) -> str:
    return _ALIASES.get(name, name)


def service_url(name: str) -> str:
    """The URL of test server ``name`` (redis, postgres, moto, seaweed, gcs, azurite or memcached)."""
    name = _canon(name)
    if name not in DEFAULT_URLS:
        raise KeyError(f"unknown test server {name!r}; known: {', '.join(SERVICE_NAMES)}")
    return os.environ.get(_ENV[name]) or DEFAULT_URLS[name]


def redis_url() -> str:
    """``redis://127.0.0.1:24010/0`` unless ``KVFS_TEST_REDIS_URL`` says otherwise."""
    return service_url("redis")


def postgres_url() -> str:
    """SQLAlchemy URL of the PostgreSQL test database (``KVFS_TEST_POSTGRES_URL``)."""
    return service_url("postgres")


def moto_url() -> str:
    """Endpoint of the moto S3 server (``KVFS_TEST_MOTO_URL``); it accepts any credentials."""
    return service_url("moto")


def seaweed_url() -> str:
    """Endpoint of the SeaweedFS S3 server (``KVFS_TEST_SEAWEED_URL``); it checks signatures."""
    return service_url("seaweed")


def seaweed_credentials() -> tuple[str, str]:
    """The (access key, secret key) SeaweedFS was started with."""
    return (
        os.environ.get("KVFS_TEST_SEAWEED_KEY") or "kvfs-test",
        os.environ.get("KVFS_TEST_SEAWEED_SECRET") or "kvfs-test-secret",
    )


def gcs_url() -> str:
    """Endpoint of fake-gcs-server (``KVFS_TEST_GCS_URL``), for ``STORAGE_EMULATOR_HOST``."""
    return service_url("gcs")


def azure_connection_string() -> str:
    """Connection string of Azurite's blob service (``KVFS_TEST_AZURE_CONNECTION_STRING``)."""
    return os.environ.get("KVFS_TEST_AZURE_CONNECTION_STRING") or (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={service_url('azurite')};"
    )


def memcached_url() -> str:
    """``memcached://127.0.0.1:24070`` unless ``KVFS_TEST_MEMCACHED_URL`` says otherwise."""
    return service_url("memcached")


def host_port(name: str) -> tuple[str, int]:
    """(host, port) of test server ``name``, taken from its URL."""
    parts = urlsplit(service_url(name))
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host:port in the URL of {name}: {service_url(name)!r}")
    return parts.hostname, parts.port


def in_ci() -> bool:
    """True when ``CI`` is set to ``true`` (as CI systems do): missing servers are then failures."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def server_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Does something accept a TCP connection on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def closed_port(host: str = "127.0.0.1") -> int:
    """A TCP port on *host* where nothing listens (one the system just gave out and took back)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def require_server(name: str, host: str | None = None, port: int | None = None) -> str | None:
    """Skip the calling test (fail it under ``CI=true``) unless test server ``name`` accepts connections.

    ``host`` and ``port`` default to those in the server's URL; for a known server the URL is returned.
    """
    known = _canon(name) in DEFAULT_URLS
    if host is None or port is None:
        default_host, default_port = host_port(name)
        host = default_host if host is None else host
        port = default_port if port is None else port
    if server_answers(host, port):
        return service_url(name) if known else None
    message = (
        f"test server {name!r} is not answering on {host}:{port}; "
        f"start the servers with `scripts/services start` (or run the suite with `scripts/test`)"
    )
    if in_ci():
        pytest.fail(f"CI=true and a required test server is missing: {message}", pytrace=False)
    pytest.skip(message)


def _services(command: str, name: str, timeout: float) -> str:
    proc = subprocess.run(
        ["bash", str(SERVICES), command, _canon(name)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"scripts/services {command} {name} failed with exit status {proc.returncode}:\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def stop_service(name: str, timeout: float = 60) -> str:
    """Stop test server ``name`` (``scripts/services stop NAME``); returns the script's output."""
    return _services("stop", name, timeout)


def start_service(name: str, timeout: float = 120) -> str:
    """Start test server ``name`` and wait until it answers (``scripts/services start NAME``)."""
    return _services("start", name, timeout)
