"""File names through a real mount: percent-encoding, raw keys, too-long names."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest
from mount_support import mnt, store  # noqa: F401 - fixtures

from kvfs.mount.paths import component_name, is_raw_name, name_component

SPECIAL_NAMES = ["with space", "colon:x", "star*", "pipe|x", "percent%", "100%25", "grüße.txt", "日本", "a%2Fb"]


@pytest.mark.parametrize("name", SPECIAL_NAMES + ["plain.txt", "...", "\udcff-not-utf8", "%41"])
def test_name_and_component_round_trip(name: str) -> None:
    component = name_component(name)
    assert component_name(component) == name
    assert "/" not in component and component not in (".", "..")


def test_keys_that_do_not_decode_to_themselves_are_shown_as_they_are() -> None:
    for component in ["100%", "%41", "a%2Fb", "%zz", "%2e%2E"]:
        assert component_name(component) == component
        assert is_raw_name(component)
    assert not is_raw_name("a b")


def test_special_names_are_stored_percent_encoded(mnt: pathlib.Path, store) -> None:
    for name in SPECIAL_NAMES:
        (mnt / name).write_bytes(name.encode("utf-8", "surrogateescape"))
    stored = set(store.keys())
    assert stored == {name_component(name) for name in SPECIAL_NAMES}
    assert "with%20space" in stored and "percent%25" in stored and "gr%C3%BC%C3%9Fe.txt" in stored
    assert sorted(os.listdir(mnt)) == sorted(SPECIAL_NAMES)
    for name in SPECIAL_NAMES:
        assert (mnt / name).read_bytes() == name.encode()


def test_non_utf8_name(mnt: pathlib.Path, store) -> None:
    name = b"bad\xff.bin"
    with open(os.path.join(os.fsencode(mnt), name), "wb") as file:
        file.write(b"x")
    assert store.keys() == ["bad%FF.bin"]
    assert os.listdir(os.fsencode(mnt)) == [name]


def test_library_keys_show_decoded_and_raw(mnt: pathlib.Path, store) -> None:
    store.put("dir%20one/file%3Aa", b"decoded")
    store.put("50%", b"raw")
    names = os.listdir(mnt)
    assert sorted(names) == ["50%", "dir one"]
    assert (mnt / "dir one" / "file:a").read_bytes() == b"decoded"
    assert (mnt / "50%").read_bytes() == b"raw"  # the raw key is found under its own name
    (mnt / "50%").write_bytes(b"changed")
    assert store.get("50%") == b"changed"


def test_too_long_names_give_enametoolong(mnt: pathlib.Path, store) -> None:
    limit = store.max_component_length or store.max_key_length
    with pytest.raises(OSError) as raised:
        (mnt / ("n" * (limit + 1))).write_bytes(b"x")
    assert raised.value.errno == errno.ENAMETOOLONG
    # A name within the limit before encoding but over it after (3 bytes per character).
    with pytest.raises(OSError) as raised:
        os.mkdir(mnt / (":" * (limit // 3 + 1)))
    assert raised.value.errno == errno.ENAMETOOLONG
    # A path whose key is longer than the store allows.
    deep = mnt
    for _ in range(store.max_key_length // 200 + 1):
        deep = deep / ("d" * 199)
        try:
            deep.mkdir()
        except OSError as error:
            assert error.errno == errno.ENAMETOOLONG
            break
    else:
        pytest.fail("no ENAMETOOLONG for a key longer than the store's limit")
    assert not store.keys()
