"""The one key rule (:mod:`kvfs.keys`): the regular expression, limits and messages."""

from __future__ import annotations

import re
import string

import pytest

import kvfs
from kvfs.errors import InvalidKeyError
from kvfs.keys import (
    KEY_ALPHABET,
    MAX_KEY_LENGTH,
    VALID_KEY_RE,
    VALID_KEY_REGEXP,
    check_key,
    check_prefix,
    is_valid_key,
)
from kvfs.testing import INVALID_KEYS, KEY_CHARACTERS

# simplekv's alphabet, as simplekv spells it: VALID_NON_NUM plus letters and digits.
SIMPLEKV_NON_NUM = r"""\`\!"#$%&'()+,-.<=>?@[]^_{}~"""
SIMPLEKV_CHARACTERS = set(SIMPLEKV_NON_NUM) | set(string.ascii_letters + string.digits)


def test_alphabet_is_simplekvs():
    single_characters = {chr(code) for code in range(0x10000)}  # the whole BMP
    valid = {char for char in single_characters if VALID_KEY_RE.match(char)}
    # '.' alone is not a key (it is a path component); everything else matches simplekv.
    assert valid == SIMPLEKV_CHARACTERS - {"."}
    assert set(KEY_CHARACTERS) == SIMPLEKV_CHARACTERS


def test_regexp_is_exported_and_compiled_from_itself():
    assert kvfs.VALID_KEY_REGEXP == VALID_KEY_REGEXP
    assert kvfs.VALID_KEY_RE is VALID_KEY_RE
    assert VALID_KEY_RE.pattern == VALID_KEY_REGEXP
    assert re.fullmatch(f"[{KEY_ALPHABET}]+", KEY_CHARACTERS)


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "0",
        "a/b",
        "a/b/c/d/e",
        "...",
        ".a",
        "a.",
        "..a",
        "a/.b/c",
        "a/..b/c",
        "~",
        "[x]",
        "a\\b",
        KEY_CHARACTERS,
        "k" * MAX_KEY_LENGTH,
    ],
)
def test_valid_keys(key):
    assert VALID_KEY_RE.match(key)
    assert is_valid_key(key)
    check_key(key)


@pytest.mark.parametrize("key", [k for k in INVALID_KEYS.values() if isinstance(k, str)])
def test_invalid_keys(key):
    assert not VALID_KEY_RE.match(key)
    assert not is_valid_key(key)
    with pytest.raises(InvalidKeyError):
        check_key(key)


@pytest.mark.parametrize("key", ["abc\n", "\nabc", "a/b\n", "a\n/b"])
def test_whole_key_must_match(key):
    """``$`` would accept a trailing newline; the rule anchors with ``\\Z``."""
    assert VALID_KEY_RE.match(key) is None
    assert VALID_KEY_RE.search(key) is None


@pytest.mark.parametrize("key", [".", "..", "./a", "../a", "a/.", "a/..", "a/./b", "a/../b"])
def test_dot_components_are_invalid(key):
    assert not is_valid_key(key)


def test_key_length_limit():
    assert MAX_KEY_LENGTH == kvfs.MAX_KEY_LENGTH == 1024
    assert is_valid_key("k" * 1024)
    assert not is_valid_key("k" * 1025)
    assert is_valid_key("k" * 10, max_length=10)
    assert not is_valid_key("k" * 11, max_length=10)


def test_too_long_message_names_length_and_limit():
    with pytest.raises(InvalidKeyError, match=r"1025 bytes long, the limit of this store is 1024"):
        check_key("k" * 1025)
    with pytest.raises(InvalidKeyError, match=r"is 100 bytes"):
        check_key("k" * 101, max_length=100)


def test_component_limit():
    check_key("a" * 255 + "/" + "b" * 255, max_component_length=255)
    with pytest.raises(InvalidKeyError, match=r"256 bytes long.*255 bytes per component"):
        check_key("a/" + "b" * 256, max_component_length=255)


def test_invalid_key_message_names_the_key_and_the_rule():
    with pytest.raises(InvalidKeyError) as caught:
        check_key("a b")
    message = str(caught.value)
    assert "'a b'" in message
    assert "'.' and '..'" in message


@pytest.mark.parametrize("key", [None, 1, 1.5, b"abc", ["a"]])
def test_non_str_key_message_names_the_type(key):
    with pytest.raises(InvalidKeyError, match=f"must be a str, not {type(key).__name__}"):
        check_key(key)
    assert not is_valid_key(key)


def test_invalid_key_error_is_value_error():
    with pytest.raises(ValueError):
        check_key("")


def test_str_subclass_is_judged_by_its_text():
    class Name(str):
        pass

    check_key(Name("a/b"))
    with pytest.raises(InvalidKeyError):
        check_key(Name("a//b"))


def test_check_prefix():
    assert check_prefix("") == ""
    assert check_prefix("a/b") == "a/b"
    assert check_prefix("a/") == "a/"
    with pytest.raises(InvalidKeyError):
        check_prefix(None)


def test_one_alphabet_spelled_once() -> None:
    import re

    from kvfs.keys import KEY_ALPHABET, KEY_CHARACTERS
    from kvfs.mount import paths

    allowed = {chr(code) for code in range(0x3000) if re.fullmatch(f"[{KEY_ALPHABET}]", chr(code))}
    assert allowed == set(KEY_CHARACTERS)
    assert paths._PLAIN == set(KEY_CHARACTERS) - {"%"}


def test_too_long_keys_raise_key_too_long_error_a_value_error() -> None:
    from kvfs.errors import InvalidKeyError, KeyTooLongError
    from kvfs.keys import check_key

    with pytest.raises(KeyTooLongError):
        check_key("a" * 11, max_length=10)
    with pytest.raises(KeyTooLongError):
        check_key("abc/" + "b" * 6, max_component_length=5)
    with pytest.raises(InvalidKeyError) as caught:
        check_key("a b")
    assert not isinstance(caught.value, KeyTooLongError)
    assert issubclass(KeyTooLongError, ValueError)
