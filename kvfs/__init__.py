"""kvfs: a simplekv-compatible key-value store for binary blobs, and a FUSE view of it.

The core imports nothing outside the standard library. Backends live in their own
modules (``kvfs.fs``, ``kvfs.memory``, ``kvfs.db.sql``, ``kvfs.net.boto3store``, ...);
:func:`kvfs.open_store` opens any of them from a URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BackendError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    KvfsError,
    MissingExtraError,
    ReadOnlyError,
)
from .keys import MAX_KEY_LENGTH, VALID_KEY_RE, VALID_KEY_REGEXP, check_key, is_valid_key
from .mixins import FOREVER, NOT_SET, CopyMixin, TimeToLiveMixin, UrlKeyValueStore, UrlMixin
from .store import KeyInfo, KeyValueStore, Metadata

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .url import open_store


def __getattr__(name: str) -> Any:
    # open_store knows every backend; import it only when asked, to keep `import kvfs` light.
    if name == "open_store":
        from .url import open_store

        return open_store
    raise AttributeError(f"module 'kvfs' has no attribute {name!r}")


__all__ = [
    "KeyValueStore",
    "KeyInfo",
    "Metadata",
    "UrlMixin",
    "UrlKeyValueStore",
    "CopyMixin",
    "TimeToLiveMixin",
    "FOREVER",
    "NOT_SET",
    "VALID_KEY_REGEXP",
    "VALID_KEY_RE",
    "MAX_KEY_LENGTH",
    "check_key",
    "is_valid_key",
    "open_store",
    "KvfsError",
    "KeyNotFoundError",
    "InvalidKeyError",
    "InvalidValueError",
    "BackendError",
    "ReadOnlyError",
    "MissingExtraError",
]
