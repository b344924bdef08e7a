"""What coordinated hosts tell each other: :class:`Change` messages and their channels.

A change message says which store changed (its *channel*, derived from the store's URL
by :func:`channel_for` so that credentials never travel), what happened (a
:class:`ChangeKind`), to which keys, who did it (the *sender*, so a mount can ignore its
own messages) and when (a per-sender sequence number and the sender's clock). Messages
are small JSON documents, the same for every engine.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

#: Version of the message format; a message of another version is ignored.
FORMAT_VERSION = 1

#: The largest encoded message an engine is given. PostgreSQL's NOTIFY takes at most
#: 8000 bytes; a change with more keys is sent as several messages.
MAX_MESSAGE_BYTES = 7000

# Query parameters that do not change which store a URL names: the coordination and
# decorator settings that leave keys alone, and credentials (see _is_credential).
_IRRELEVANT_PARAMETERS = frozenset({"coordinate", "readonly", "hmac_secret_env", "create", "public"})
_CREDENTIAL_WORDS = ("password", "secret", "token", "credential", "key")


class ChangeKind(str, enum.Enum):
    """What happened to the keys of a :class:`Change`."""

    #: A value was written (created or replaced): ``keys`` holds it.
    WRITE = "write"
    #: Values were deleted: ``keys`` holds them.
    DELETE = "delete"
    #: ``keys`` is ``(source, dest)``; with ``directory`` the whole tree below moved.
    RENAME = "rename"
    #: A directory was made: ``keys`` holds it.
    MKDIR = "mkdir"
    #: A directory was removed: ``keys`` holds it.
    RMDIR = "rmdir"
    #: Attributes (mode, owner, times) of ``keys`` changed, not their content.
    ATTRIBUTES = "attributes"


@dataclass(frozen=True)
class Change:
    """One change to a store, as published after it reached the store.

    ``keys`` are the keys as seen through the coordinated store (or the mount);
    ``sequence`` counts the sender's messages from 1, and ``time`` is the sender's clock
    (seconds since the epoch) when it published. A write of one regular file may say its
    new ``size`` and ``mtime`` (as the writer shows them), so a mount that is told needs
    not ask the store for them.
    """

    channel: str
    kind: ChangeKind
    keys: tuple[str, ...]
    sender: str
    sequence: int
    time: float
    directory: bool = False
    size: int | None = None
    mtime: float | None = None

    def encode(self) -> str:
        """The message as JSON text."""
        document: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "c": self.channel,
            "k": self.kind.value,
            "keys": list(self.keys),
            "s": self.sender,
            "n": self.sequence,
            "t": self.time,
        }
        if self.directory:
            document["d"] = True
        if self.size is not None and self.mtime is not None:
            document["z"], document["m"] = self.size, self.mtime
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def decode(cls, text: str | bytes) -> Change:
        """Parse a message; ``ValueError`` for anything that is not a kvfs change message."""
        try:
            document = json.loads(text)
            if document.get("v") != FORMAT_VERSION:
                raise ValueError(f"message format {document.get('v')!r} is not {FORMAT_VERSION}")
            keys = document["keys"]
            if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
                raise ValueError("keys must be a list of strings")
            return cls(
                channel=str(document["c"]),
                kind=ChangeKind(document["k"]),
                keys=tuple(keys),
                sender=str(document["s"]),
                sequence=int(document["n"]),
                time=float(document["t"]),
                directory=bool(document.get("d", False)),
                size=None if document.get("z") is None else int(document["z"]),
                mtime=None if document.get("m") is None else float(document["m"]),
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a kvfs change message: {error}") from None


def split_keys(kind: ChangeKind, keys: Sequence[str], budget: int = MAX_MESSAGE_BYTES) -> Iterator[tuple[str, ...]]:
    """Cut *keys* into groups whose messages stay below *budget* bytes.

    A rename's ``(source, dest)`` pair is never cut. Keys are at most a few kilobytes,
    so one key always fits.
    """
    if kind is ChangeKind.RENAME or len(keys) <= 1:
        yield tuple(keys)
        return
    group: list[str] = []
    size = 0
    for key in keys:
        cost = len(json.dumps(key, ensure_ascii=False).encode()) + 1
        if group and size + cost > budget - 400:  # room for the other fields
            yield tuple(group)
            group, size = [], 0
        group.append(key)
        size += cost
    if group:
        yield tuple(group)


def new_sender_id() -> str:
    """A name for this process's coordinator, unique across hosts: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _is_credential(name: str) -> bool:
    lowered = name.lower()
    return not lowered.endswith("_env") and any(word in lowered for word in _CREDENTIAL_WORDS)


def normalise_store_url(store_url: str, options: Mapping[str, Any] | None = None) -> str:
    """The store's URL as every host writes it: what names the store, and nothing else.

    The scheme and host are lower-cased (``postgresql+psycopg`` is ``postgresql``), a
    plain path becomes an absolute ``file://`` URL, user names, passwords and
    secret-looking parameters are dropped, as are the parameters that do not change the
    keys (``coordinate``, ``readonly``, ``hmac_secret_env``, ``create``, ``public``), and
    the remaining parameters (with string *options*) are sorted. ``prefix`` and
    ``urlencode`` stay: they change which keys a store shows.
    """
    text = store_url.strip()
    if "://" not in text:
        text = "file://" + quote(os.path.abspath(text))
    parts = urlsplit(text)
    scheme = parts.scheme.lower().split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    host = (parts.hostname or "").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    path = parts.path
    if scheme in ("s3", "gs"):
        path = path.rstrip("/")
    parameters = dict(parse_qsl(parts.query, keep_blank_values=True))
    for name, value in (options or {}).items():
        if isinstance(value, str):
            parameters[name] = value
    kept = sorted(
        (name, value)
        for name, value in parameters.items()
        if name not in _IRRELEVANT_PARAMETERS and not _is_credential(name)
    )
    url = f"{scheme}://{host}{path}"
    return f"{url}?{urlencode(kept)}" if kept else url


def channel_for(store_url: str, options: Mapping[str, Any] | None = None) -> str:
    """The channel of the store *store_url* names: ``kvfs-`` and 32 hex digits.

    A hash of :func:`normalise_store_url`, so hosts that open the same store with
    different credentials, parameter order or ``readonly`` share the channel, and
    nothing secret (nor even the bucket name) is sent to the coordination engine.
    """
    digest = hashlib.sha256(normalise_store_url(store_url, options).encode("utf-8")).hexdigest()
    return "kvfs-" + digest[:32]


__all__ = [
    "FORMAT_VERSION",
    "MAX_MESSAGE_BYTES",
    "Change",
    "ChangeKind",
    "channel_for",
    "new_sender_id",
    "normalise_store_url",
    "split_keys",
]
