"""Open any store from a URL: :func:`open_store`, its parser and its scheme registry.

A store URL is a backend URL plus optional query parameters that wrap the store in
decorators, the same for every scheme::

    redis://localhost:6379/0?prefix=app/&readonly=1

Supported schemes (:data:`SCHEMES`) and the backend each opens::

    /srv/data, ./data, file:///srv/data        FilesystemStore (kvfs.fs)
    memory://                                   DictStore (kvfs.memory)
    sqlite:///relative.db, sqlite:////abs.db    SQLAlchemyStore (kvfs.db.sql)
    postgresql://user@host:5432/db              SQLAlchemyStore, with psycopg 3
    redis://[:password@]host:6379/0             RedisStore (kvfs.memory.redisstore)
    s3://[access_key:secret_key@]bucket/prefix  Boto3Store (kvfs.net.boto3store)
    gs://bucket/prefix                          GoogleCloudStore (kvfs.net.gcstore)
    azure://container/prefix                    AzureBlockBlobStore (kvfs.net.azurestore)
    memcached://host:11211                      MemcacheStore (kvfs.memory.memcachestore)
    fsspec+PROTOCOL://path?option=value         FsspecStore (kvfs.net.fsspecstore)

Decorator parameters, applied innermost first in this order whatever their order in
the URL: ``prefix=P`` (:class:`~kvfs.decorator.PrefixDecorator`), ``urlencode=1``
(:class:`~kvfs.decorator.URLEncodeKeysDecorator`), ``hmac_secret_env=NAME``
(:class:`~kvfs.crypt.HMACDecorator` with the secret read from environment variable
*NAME*, so the secret is never part of the URL), ``coordinate=URL``
(:class:`~kvfs.coordination.store.CoordinatedStore`, publishing changes through the
coordination engine at *URL*), ``readonly=1`` (:class:`~kvfs.decorator.ReadOnlyDecorator`).

Passwords and secret keys in a URL never appear in a repr or an error message: they are
shown as ``***`` (see :func:`mask_url`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from .store import KeyValueStore

_MASK = "***"
_TRUE = {"1", "true", "yes", "on", ""}  # a bare ?readonly means yes
_FALSE = {"0", "false", "no", "off"}
# Query parameters whose values are secrets, whatever the scheme: names containing one of
# these words, or ending in "key" (api_key, sslkey). Masking a harmless value costs little.
_SECRET_PARAMETERS = ("password", "passwd", "secret", "token", "credential", "auth")

#: The decorator parameters every scheme accepts, in the order they are applied.
DECORATOR_PARAMETERS = ("prefix", "urlencode", "hmac_secret_env", "coordinate", "readonly")


def _join(parts: SplitResult) -> str:
    # Not urlunsplit: it turns sqlite:////abs.db (empty host, path //abs.db) into sqlite://abs.db.
    url = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return f"{url}?{parts.query}" if parts.query else url


def mask_url(url: str) -> str:
    """Return *url* with its password and secret-looking query values replaced by ``***``."""
    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + _MASK
            netloc = f"{userinfo}@{host}"
        query = parse_qsl(parts.query, keep_blank_values=True)
        # A URL as a parameter value (?coordinate=redis://:pw@host) is masked in turn.
        masked = [
            (name, _MASK if _is_secret(name) else mask_url(value) if "://" in value else value)
            for name, value in query
        ]
        if masked != query:
            parts = parts._replace(query=urlencode(masked, safe="/:*"))
        return _join(parts._replace(netloc=netloc))
    except ValueError:
        return "<unparsable URL>"


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    if lowered.endswith("_env"):
        return False  # names an environment variable, not a secret
    return lowered.endswith("key") or any(word in lowered for word in _SECRET_PARAMETERS)


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL: the scheme, the backend's part, and the decorator settings.

    ``params`` holds the backend's query parameters (and the ``open_store`` keyword
    options), ``decorators`` the decorator parameters. ``str()`` and ``repr()`` show the
    URL with secrets masked.
    """

    scheme: str
    parts: SplitResult
    params: dict[str, Any] = field(default_factory=dict)
    decorators: dict[str, Any] = field(default_factory=dict)

    @property
    def backend_url(self) -> str:
        """The URL without the decorator parameters (secrets included: never log it)."""
        query = urlencode({k: v for k, v in self.params.items() if isinstance(v, str)})
        return _join(self.parts._replace(query=query))

    def __str__(self) -> str:
        return mask_url(_join(self.parts))

    def __repr__(self) -> str:
        return f"StoreURL({str(self)!r})"

    def pop(self, name: str, default: Any = None) -> Any:
        """Take parameter *name* out of :attr:`params` (so it is known to be used)."""
        return self.params.pop(name, default)

    def pop_bool(self, name: str, default: bool = False) -> bool:
        value = self.params.pop(name, default)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{self}: {name}={value!r} is not a yes/no value (use 1 or 0)")

    def pop_int(self, name: str, default: int | None = None) -> int | None:
        value = self.params.pop(name, default)
        if value is None or isinstance(value, int):
            return value
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{self}: {name}={value!r} is not a whole number") from None

    def reject_unknown(self) -> None:
        """Raise ``ValueError`` naming any parameter the opener did not use."""
        if self.params:
            names = ", ".join(sorted(self.params))
            raise ValueError(f"{self}: unknown parameter(s) for {self.scheme}://: {names}")


@dataclass(frozen=True)
class Scheme:
    """One entry of the registry: the URL schemes, an example, and the opener.

    ``travels_by_url``: a store opened from such a URL pickles as its URL and options
    (the other process opens it again); False where the content lives in this process
    (``memory://``), so the store pickles as itself.
    """

    names: tuple[str, ...]
    example: str
    open: Callable[[StoreURL], KeyValueStore]
    travels_by_url: bool = True


# ---------------------------------------------------------------------- openers


def _open_file(url: StoreURL) -> KeyValueStore:
    from .fs import FilesystemStore

    if url.parts.netloc not in ("", "localhost"):
        raise ValueError(f"{url}: a file URL names a local path: file:///absolute/path")
    path = unquote(url.parts.path)
    if not path:
        raise ValueError(f"{url}: no directory given; expected file:///absolute/path")
    create = url.pop_bool("create")
    url.reject_unknown()
    return FilesystemStore(path, create_if_missing=create)


def _open_memory(url: StoreURL) -> KeyValueStore:
    from .memory import DictStore

    if url.parts.netloc or url.parts.path.strip("/"):
        raise ValueError(f"{url}: a memory store has no location; use memory://")
    url.reject_unknown()
    return DictStore()


def _open_sql(url: StoreURL) -> KeyValueStore:
    from .db.sql import SQLAlchemyStore

    tablename = url.pop("table", "kvfs")
    options = {k: v for k, v in url.params.items() if not isinstance(v, str)}
    for name in options:
        url.params.pop(name)
    return SQLAlchemyStore.from_url(url.backend_url, tablename=tablename, **options)


def _open_redis(url: StoreURL) -> KeyValueStore:
    from .memory.redisstore import RedisStore

    options = {k: v for k, v in url.params.items() if not isinstance(v, str)}
    for name in options:
        url.params.pop(name)
    return RedisStore.from_url(url.backend_url, **options)


def _bucket_and_prefix(url: StoreURL) -> tuple[str, str]:
    bucket = url.parts.netloc.rsplit("@", 1)[-1]
    if not bucket:
        raise ValueError(f"{url}: no bucket given; expected {url.scheme}://bucket/prefix")
    prefix = unquote(url.parts.path).lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # the path names a directory of the bucket
    return bucket, prefix


def _open_s3(url: StoreURL) -> KeyValueStore:
    from .net.boto3store import Boto3Store

    bucket, prefix = _bucket_and_prefix(url)
    options: dict[str, Any] = {}
    if url.parts.username:
        options["aws_access_key_id"] = unquote(url.parts.username)
        options["aws_secret_access_key"] = unquote(url.parts.password or "")
    for name, alias in (
        ("endpoint_url", None),
        ("region", "region_name"),
        ("addressing_style", None),
        ("profile", "profile_name"),
        ("forbidden_key_characters", None),
    ):
        value = url.pop(name)
        if value is not None:
            options[alias or name] = value
    for name in ("max_component_length", "url_valid_time", "max_attempts"):
        value = url.pop_int(name)
        if value is not None:
            options[name] = value
    options["public"] = url.pop_bool("public")
    options["create_if_missing"] = url.pop_bool("create")
    for name in ("client",):
        if name in url.params:
            options[name] = url.pop(name)
    url.reject_unknown()
    return Boto3Store(bucket, prefix, **options)


def _open_gcs(url: StoreURL) -> KeyValueStore:
    from .net.gcstore import GoogleCloudStore

    bucket, prefix = _bucket_and_prefix(url)
    if url.parts.username:
        raise ValueError(f"{url}: give GCS credentials with ?credentials=/path/to/key.json")
    credentials = url.pop("credentials")
    project = url.pop("project")
    create = url.pop_bool("create")
    location = url.pop("location", "EUROPE-WEST3")
    options: dict[str, Any] = {"prefix": prefix}
    url_valid_time = url.pop_int("url_valid_time")
    if url_valid_time is not None:
        options["url_valid_time"] = url_valid_time
    if "client" in url.params:
        options["client"] = url.pop("client")
    url.reject_unknown()
    return GoogleCloudStore(credentials, bucket, create, location, project, **options)


#: Where an azure:// URL's connection string comes from, unless ?connection_string_env=NAME.
AZURE_CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"


def _open_azure(url: StoreURL) -> KeyValueStore:
    from .net.azurestore import AzureBlockBlobStore

    container, prefix = _bucket_and_prefix(url)
    if url.parts.username or url.parts.password:
        raise ValueError(f"{url}: give Azure credentials in ${AZURE_CONNECTION_STRING_ENV}, not in the URL")
    options: dict[str, Any] = {"prefix": prefix}
    client = url.pop("client")
    variable = url.pop("connection_string_env", AZURE_CONNECTION_STRING_ENV)
    conn_string = None
    if client is not None:
        options["client"] = client
    else:
        conn_string = os.environ.get(variable)
        if not conn_string:
            raise ValueError(f"{url}: environment variable {variable!r} (the storage account's connection string) is not set")
    options["create_if_missing"] = url.pop_bool("create")
    options["public"] = url.pop_bool("public")
    options["checksum"] = url.pop_bool("checksum")
    for name in ("max_connections", "url_valid_time"):
        value = url.pop_int(name)
        if value is not None:
            options[name] = value
    url.reject_unknown()
    return AzureBlockBlobStore(conn_string, container, **options)


def _open_memcached(url: StoreURL) -> KeyValueStore:
    from .memory.memcachestore import MemcacheStore

    options: dict[str, Any] = {}
    ttl = url.pop_int("default_ttl_secs")
    if ttl is not None:
        options["default_ttl_secs"] = ttl
    url.reject_unknown()
    return MemcacheStore.from_url(url.backend_url, **options)


def _open_fsspec(url: StoreURL) -> KeyValueStore:
    from .net.fsspecstore import FsspecStore

    protocol = url.scheme.partition("+")[2]
    if not protocol:
        raise ValueError(
            f"{url}: name the filesystem: fsspec+PROTOCOL://path, e.g. fsspec+memory://"
        )
    options = dict(url.params)
    url.params.clear()  # every other parameter is a storage option of the filesystem
    return FsspecStore.from_url(f"{protocol}://{url.parts.netloc}{url.parts.path}", **options)


#: The registry of URL schemes, by scheme name. The CLI and the mount use it through
#: :func:`open_store`; a new backend adds one entry.
SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> None:
    """Add *scheme* to :data:`SCHEMES` under each of its names."""
    for name in scheme.names:
        SCHEMES[name] = scheme


for _scheme in (
    Scheme(("file",), "file:///srv/data (or just a path)", _open_file),
    Scheme(("memory",), "memory://", _open_memory, travels_by_url=False),
    Scheme(("sqlite",), "sqlite:///relative.db or sqlite:////absolute.db", _open_sql),
    Scheme(("postgresql", "postgresql+psycopg"), "postgresql://user@host:5432/db", _open_sql),
    Scheme(("redis", "rediss"), "redis://host:6379/0", _open_redis),
    Scheme(("s3",), "s3://bucket/prefix?endpoint_url=http://host:port", _open_s3),
    Scheme(("gs",), "gs://bucket/prefix?project=NAME", _open_gcs),
    Scheme(("azure",), "azure://container/prefix (connection string in $AZURE_STORAGE_CONNECTION_STRING)", _open_azure),
    Scheme(("memcached",), "memcached://host:11211", _open_memcached),
    # A family: every fsspec+PROTOCOL scheme (see _scheme_named).
    Scheme(("fsspec+",), "fsspec+PROTOCOL://path (any fsspec filesystem)", _open_fsspec),
):
    register_scheme(_scheme)


def _scheme_named(name: str) -> Scheme | None:
    """The registry entry for scheme *name*: its own, else its family's (``fsspec+``...)."""
    family = name.partition("+")[0] + "+"
    return SCHEMES.get(name) or (SCHEMES.get(family) if "+" in name else None)


def _expected() -> str:
    seen: list[str] = []
    for scheme in SCHEMES.values():
        if scheme.example not in seen:
            seen.append(scheme.example)
    return "expected a directory path or one of: " + "; ".join(seen)


# ---------------------------------------------------------------------- parse and open


def parse_store_url(url: str, options: Mapping[str, Any] | None = None) -> StoreURL:
    """Parse *url* (and keyword *options*, which override its query parameters).

    Raises ``ValueError`` for an empty or malformed URL, an unknown scheme (listing the
    known ones) or a repeated parameter; secrets are masked in every message.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"no store URL given; {_expected()}")
    url = url.strip()
    if "://" not in url:
        if ":" in url.split("/", 1)[0] and not os.path.exists(url):
            raise ValueError(f"{mask_url(url)!r} is not a store URL; {_expected()}")
        # A plain path: no query string, every character is part of the path.
        path = SplitResult("file", "", quote(os.path.abspath(url)), "", "")
        return (
            StoreURL("file", path, {}, {}) if not options else parse_store_url(_join(path), options)
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port number
    except ValueError as error:
        raise ValueError(f"{mask_url(url)!r} is not a valid URL ({error}); {_expected()}") from None
    scheme = parts.scheme.lower()
    if _scheme_named(scheme) is None:
        raise ValueError(
            f"unknown store URL scheme {scheme + '://'!r} in {mask_url(url)!r}; {_expected()}"
        )
    if parts.fragment:
        raise ValueError(f"{mask_url(url)!r}: a store URL has no #fragment")
    params: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in params:
            raise ValueError(f"{mask_url(url)!r}: parameter {name!r} is given twice")
        params[name] = value
    params.update(options or {})
    decorators = {name: params.pop(name) for name in DECORATOR_PARAMETERS if name in params}
    return StoreURL(scheme, parts._replace(query=""), params, decorators)


def open_store(url: str, **options: Any) -> KeyValueStore:
    """Open the store *url* names, wrapped in the decorators its parameters ask for.

    *options* add to or override the URL's query parameters (``readonly=True``,
    ``endpoint_url="http://..."``, ...). Raises ``ValueError`` for a bad or unknown URL
    or parameter (the message lists what is expected),
    :class:`~kvfs.errors.MissingExtraError` when the backend's client library is not
    installed (naming the ``pip install 'kvfs[EXTRA]'`` to run), and what the backend
    raises when it cannot be reached at construction. The store pickles as *url* and
    *options* where they are plain values (see :class:`Scheme`).
    """
    parsed = parse_store_url(url, options)
    scheme = _scheme_named(parsed.scheme)
    assert scheme is not None  # parse_store_url checked it
    location = _location(parsed)  # before the opener takes its parameters out
    store = scheme.open(parsed)
    try:
        store = _decorate(store, parsed, location)
    except BaseException:
        store.close()
        raise
    if scheme.travels_by_url and all(isinstance(value, _PLAIN) for value in options.values()):
        # A pickle of the store is its URL: the other process opens it again, reading
        # secrets named by *_env parameters from its own environment.
        store._rebuilt_by(open_store, url, **options)
    return store


# Option values a pickle of a URL carries as they are (a client object is not one).
_PLAIN = (str, int, float, bool, type(None))


def _location(url: StoreURL) -> str:
    """The URL with every text parameter: what names the store (for a coordination channel)."""
    texts = {k: v for k, v in {**url.params, **url.decorators}.items() if isinstance(v, str)}
    return _join(url.parts._replace(query=urlencode(texts)))


def _decorate(store: KeyValueStore, url: StoreURL, location: str) -> KeyValueStore:
    settings = StoreURL(url.scheme, url.parts, dict(url.decorators))
    prefix = settings.pop("prefix")
    if prefix:
        from .decorator import PrefixDecorator

        store = PrefixDecorator(prefix, store)
    if settings.pop_bool("urlencode"):
        from .decorator import URLEncodeKeysDecorator

        store = URLEncodeKeysDecorator(store)
    variable = settings.pop("hmac_secret_env")
    if variable:
        secret = os.environ.get(variable)
        if not secret:
            raise ValueError(
                f"{url}: environment variable {variable!r} (the HMAC secret) is not set"
            )
        from .crypt import HMACDecorator

        store = HMACDecorator(secret, store)
    coordinate = settings.pop("coordinate")
    if coordinate:
        from .coordination.store import CoordinatedStore

        store = CoordinatedStore(store, coordinate, store_url=location)
    if settings.pop_bool("readonly"):
        from .decorator import ReadOnlyDecorator

        store = ReadOnlyDecorator(store)
    return store


__all__ = [
    "DECORATOR_PARAMETERS",
    "SCHEMES",
    "Scheme",
    "StoreURL",
    "mask_url",
    "open_store",
    "parse_store_url",
    "register_scheme",
]
