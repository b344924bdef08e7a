"""The one key rule of kvfs, used by every store and by the mount's path mapping.

A key is one or more components joined by ``/``. A component is made of simplekv's
alphabet: ``0-9 a-z A-Z`` and ``!"#$%&'()+,-.<=>?@[\\]^_`{}~``. A component may not be
empty, ``.`` or ``..``, so a key has no leading, trailing or doubled ``/`` and can never
climb out of a store's root. The whole key must match (a trailing newline is invalid),
and a key is at most :data:`MAX_KEY_LENGTH` bytes unless a store declares a lower limit.
"""

from __future__ import annotations

import re

from .errors import InvalidKeyError, KeyTooLongError

#: Every character allowed in a key component (simplekv's alphabet), spelled out.
KEY_CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" "!\"#$%&'()+,-.<=>?@[\\]^_`{}~"

#: :data:`KEY_CHARACTERS` as the inside of a regular expression's character class.
KEY_ALPHABET = re.escape(KEY_CHARACTERS)

_COMPONENT = "(?!\\.\\.?(?:/|\\Z))[" + KEY_ALPHABET + "]+"

#: A regular expression matching exactly the valid keys (ignoring the length limit).
VALID_KEY_REGEXP = "\\A" + _COMPONENT + "(?:/" + _COMPONENT + ")*\\Z"

#: :data:`VALID_KEY_REGEXP`, compiled.
VALID_KEY_RE = re.compile(VALID_KEY_REGEXP)

#: The longest key any store accepts, in bytes (keys are ASCII, so also characters).
MAX_KEY_LENGTH = 1024

#: The separator of key components (the mount shows it as a directory level).
SEPARATOR = "/"


#: Keys of at most this many bytes that passed the rule are remembered in _KNOWN_VALID.
#: Every store accepts such a key unless it declares a limit below this one.
SHORT_KEY_LENGTH = 255

# Short keys already seen to match the rule. The same keys are checked over and over (get
# after put, the mount's paths), and a set lookup is far cheaper than the regexp.
_KNOWN_VALID: set[str] = set()
_KNOWN_VALID_LIMIT = 1 << 17


def _matches(key: str) -> bool:
    if key in _KNOWN_VALID:
        return True
    if VALID_KEY_RE.match(key) is None:
        return False
    if len(key) <= SHORT_KEY_LENGTH:
        if len(_KNOWN_VALID) >= _KNOWN_VALID_LIMIT:
            _KNOWN_VALID.clear()  # bound the memory; set operations are atomic under the GIL
        _KNOWN_VALID.add(key)
    return True


def is_valid_key(key: object, max_length: int = MAX_KEY_LENGTH) -> bool:
    """Return whether *key* is a valid key no longer than *max_length* bytes."""
    return type(key) is str and len(key) <= max_length and _matches(key)


def check_key(
    key: object,
    max_length: int = MAX_KEY_LENGTH,
    max_component_length: int | None = None,
) -> None:
    """Raise :class:`~kvfs.errors.InvalidKeyError` (a ``ValueError``) unless *key* is valid.

    The message names the key and, when the key is too long, the limit it broke.
    """
    if type(key) is not str:
        if isinstance(key, str):  # a str subclass: judge its text
            key = str(key)
        else:
            raise InvalidKeyError(f"a key must be a str, not {type(key).__name__}: {key!r}")
    # The lengths first: they are cheap, and a name too long is ENAMETOOLONG in the mount.
    if len(key) > max_length:
        raise KeyTooLongError(
            f"key is {len(key)} bytes long, the limit of this store is {max_length} bytes"
        )
    if max_component_length is not None:
        for component in key.split(SEPARATOR):
            if len(component) > max_component_length:
                raise KeyTooLongError(
                    f"key component {component[:40]!r}... is {len(component)} bytes long, "
                    f"the limit of this store is {max_component_length} bytes per component"
                )
    if not _matches(key):
        raise InvalidKeyError(
            f"{key!r} is not a valid key: use only letters, digits and "
            "!\"#$%&'()+,-.<=>?@[\\]^_`{}~, with '/' between non-empty components "
            "other than '.' and '..'"
        )


def check_prefix(prefix: object) -> str:
    """Check a listing prefix: any str made of key characters and ``/`` (may be empty)."""
    if type(prefix) is not str:
        raise InvalidKeyError(f"a prefix must be a str, not {type(prefix).__name__}")
    return prefix


__all__ = [
    "KEY_CHARACTERS",
    "KEY_ALPHABET",
    "VALID_KEY_REGEXP",
    "VALID_KEY_RE",
    "MAX_KEY_LENGTH",
    "SEPARATOR",
    "is_valid_key",
    "check_key",
    "check_prefix",
]
