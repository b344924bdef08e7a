"""How file names in the mount map to keys, and back.

``/a/b/c.txt`` is the key ``a/b/c.txt``: each directory level is one key component. A
file name may hold characters no key may (a space, ``:``, ``*``, ``|``, anything
non-ASCII); those, and ``%`` itself, are stored percent-encoded as the bytes of their
UTF-8 form (``a b`` is the key ``a%20b``), so every name has exactly one key and the key
decodes back to the name. Names that are not UTF-8 (they reach the mount with
``surrogateescape``) encode their raw bytes.

A key written by other means whose component does not decode back to itself (``100%``,
``%41``) is shown as it is; :func:`component_name` returns it unchanged, and the mount
resolves such a name to that key when the key exists (see ``KvfsOperations``).
"""

from __future__ import annotations

import errno
import re

from ..errors import KeyTooLongError
from ..keys import KEY_CHARACTERS, SEPARATOR, check_key

# The key alphabet minus '%', which is the escape character (see kvfs.keys).
_PLAIN_CHARACTERS = KEY_CHARACTERS.replace("%", "")
_PLAIN = frozenset(_PLAIN_CHARACTERS)
_PLAIN_NAME = re.compile("[" + re.escape(_PLAIN_CHARACTERS) + "]+\\Z")
_ESCAPE = re.compile("[0-9A-F]{2}")
_ANY_KEY_CHARACTERS = re.compile("[" + re.escape(_PLAIN_CHARACTERS) + "%]+\\Z")


class PathError(OSError):
    """A path that has no key: carries the errno the mount returns (``ENAMETOOLONG``, ``EINVAL``)."""


def name_component(name: str) -> str:
    """Return the key component that stores the file name *name* (never ``.`` or ``..``)."""
    if _PLAIN_NAME.match(name):
        return name
    parts = []
    for character in name:
        if character in _PLAIN:
            parts.append(character)
        else:
            parts.extend(f"%{byte:02X}" for byte in character.encode("utf-8", "surrogateescape"))
    return "".join(parts)


def _decode(component: str) -> str | None:
    """The name whose encoding is exactly *component*, or None if there is none."""
    pieces = component.split("%")
    raw = bytearray(pieces[0].encode("ascii"))
    for piece in pieces[1:]:
        match = _ESCAPE.match(piece)
        if match is None:
            return None
        raw.append(int(match.group(0), 16))
        raw += piece[2:].encode("ascii")
    name = raw.decode("utf-8", "surrogateescape")
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        return None
    return name if name_component(name) == component else None


def component_name(component: str) -> str:
    """Return the file name that shows the key component *component*.

    A component that does not decode back to itself (see the module docstring) is
    shown as it is.
    """
    if "%" not in component:
        return component
    return _decode(component) or component


def is_raw_name(name: str) -> bool:
    """Whether *name* may be shown for a key component that does not decode to itself.

    Such a name is made only of key characters and holds a ``%`` that is not the start
    of its own encoding, so it names either the key *name* itself or ``name_component(name)``.
    """
    return "%" in name and _ANY_KEY_CHARACTERS.match(name) is not None and _decode(name) is None


def path_components(path: str) -> list[str]:
    """Split an absolute mount path into its names (``/`` gives ``[]``)."""
    return [name for name in path.split("/") if name]


def check_path_key(key: str, max_key_length: int, max_component_length: int | None) -> None:
    """Raise :class:`PathError` unless *key* fits the store.

    ``ENAMETOOLONG`` when the key or one of its components is longer than the store
    allows, ``EINVAL`` for anything else the key rule refuses.
    """
    try:
        check_key(key, max_key_length, max_component_length)
    except KeyTooLongError as error:
        raise PathError(errno.ENAMETOOLONG, str(error)) from None
    except ValueError as error:
        raise PathError(errno.EINVAL, str(error)) from None


def parent_key(key: str) -> str:
    """The key of the directory holding *key* (``""`` for the root)."""
    cut = key.rfind(SEPARATOR)
    return "" if cut == -1 else key[:cut]


def join_key(directory: str, component: str) -> str:
    """The key of *component* inside the directory *directory* (``""`` is the root)."""
    return f"{directory}{SEPARATOR}{component}" if directory else component


__all__ = [
    "PathError",
    "name_component",
    "component_name",
    "is_raw_name",
    "path_components",
    "check_path_key",
    "parent_key",
    "join_key",
]
