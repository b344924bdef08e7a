"""FilesystemStore and WebFilesystemStore: the store contract, plus what a disk adds.

Atomic replacement, no escape through symbolic links, permission bits, the key/prefix
conflict, one-directory level listings, temporary files and the file-name limit.
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import stat
import threading
from collections.abc import Iterator

import pytest

from kvfs.errors import BackendError, KeyNotFoundError, NotADirectoryKeyError
from kvfs.fs import FilesystemStore, WebFilesystemStore
from kvfs.store import KeyInfo
from kvfs.testing import StoreContract


@pytest.fixture
def contract_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A root apart from ``tmp_path``, which some contract tests expect to stay empty."""
    return tmp_path_factory.mktemp("fs-store")


class TestFilesystemStore(StoreContract):
    @pytest.fixture
    def store(self, contract_root: pathlib.Path) -> FilesystemStore:
        return FilesystemStore(str(contract_root))


class TestFilesystemStoreWithFsync(StoreContract):
    @pytest.fixture
    def store(self, contract_root: pathlib.Path) -> FilesystemStore:
        return FilesystemStore(contract_root, fsync=True)


class TestFilesystemStoreWithPerm(StoreContract):
    @pytest.fixture
    def store(self, contract_root: pathlib.Path) -> FilesystemStore:
        # A root that does not exist yet: the first write makes it.
        return FilesystemStore(str(contract_root / "new" / "root"), perm=0o640)


class TestWebFilesystemStore(StoreContract):
    @pytest.fixture
    def store(self, contract_root: pathlib.Path) -> WebFilesystemStore:
        return WebFilesystemStore(str(contract_root), "https://files.example/x/")


@pytest.fixture
def store(store_dir: pathlib.Path) -> FilesystemStore:
    return FilesystemStore(str(store_dir))


def _all_names(root: pathlib.Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


# ---------------------------------------------------------------------- layout


def test_keys_are_files_and_components_are_directories(
    store: FilesystemStore, store_dir: pathlib.Path
) -> None:
    store.put("flat", b"1")
    store.put("a/b/c", b"2")
    assert (store_dir / "flat").read_bytes() == b"1"
    assert (store_dir / "a" / "b" / "c").read_bytes() == b"2"
    assert _all_names(store_dir) == ["a", "a/b", "a/b/c", "flat"]


def test_files_written_by_others_are_keys(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    (store_dir / "d").mkdir()
    (store_dir / "d" / "made-outside").write_bytes(b"hello")
    assert store.keys() == ["d/made-outside"]
    assert store.get("d/made-outside") == b"hello"


def test_relative_root_is_fixed_at_construction(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = FilesystemStore("rel")
    store.put("k", b"v")
    monkeypatch.chdir(tmp_path.parent)
    assert store.get("k") == b"v"
    assert (tmp_path / "rel" / "k").read_bytes() == b"v"


def test_delete_keeps_parent_directories(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    store.put("a/b/c", b"x")
    store.delete("a/b/c")
    assert (store_dir / "a" / "b").is_dir()
    assert store.keys() == []
    assert store.has_directory("a/b")
    assert [entry.key for entry in store.iter_level("a/")] == ["a/b/"]


def test_root_that_is_a_file_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "file"
    root.write_bytes(b"not a directory")
    store = FilesystemStore(root)
    with pytest.raises(BackendError, match="not a directory"):
        store.put("k", b"v")
    with pytest.raises(KeyError):
        store.get("k")
    assert store.keys() == []
    assert root.read_bytes() == b"not a directory"


def test_reading_never_creates_the_root(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path / "missing")
    assert store.keys() == []
    assert list(store.iter_level()) == []
    assert "k" not in store
    with pytest.raises(KeyError):
        store.get("d/k")
    assert not (tmp_path / "missing").exists()


# ---------------------------------------------------------------------- atomicity


def test_reader_never_sees_a_partial_value(store: FilesystemStore) -> None:
    values = [bytes([n]) * (256 * 1024 + n) for n in range(4)]
    store.put("d/k", values[0])
    stop = threading.Event()
    bad: list[int] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        while not stop.is_set():
            value = store.get("d/k")
            with store.open("d/k") as file:
                streamed = file.read()
            reads += 1
            if value not in values or streamed not in values:
                bad.append(len(value))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(200):
            store.put("d/k", values[round_ % len(values)])
    finally:
        stop.set()
        reader.join()
    assert reads > 0
    assert bad == []


class FailingReader(io.RawIOBase):
    """Returns *good* in small reads, then fails like a broken network stream."""

    def __init__(self, good: bytes) -> None:
        super().__init__()
        self._good = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._good:
            raise ConnectionResetError("the source broke off")
        size = min(len(buffer), 1000, len(self._good))
        buffer[:size] = self._good[:size]
        self._good = self._good[size:]
        return size


@pytest.mark.parametrize("key", ["k", "d/k"])
def test_failing_source_keeps_old_value_and_leaves_no_temporary_file(
    store: FilesystemStore, store_dir: pathlib.Path, key: str
) -> None:
    store.put(key, b"old value")
    names = _all_names(store_dir)
    with pytest.raises(OSError, match="broke off"):
        store.put_file(key, FailingReader(b"new" * 5000))
    assert store.get(key) == b"old value"
    assert _all_names(store_dir) == names


def test_failing_source_leaves_no_key(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    with pytest.raises(OSError):
        store.put_file("new", FailingReader(b"partial"))
    assert "new" not in store
    assert _all_names(store_dir) == []


def test_temporary_and_foreign_names_are_never_listed(
    store: FilesystemStore, store_dir: pathlib.Path
) -> None:
    store.put("d/k", b"v")
    # What an interrupted write (a killed process) leaves behind, and names no key has.
    (store_dir / ".kvfs:123abc:7").write_bytes(b"partial")
    (store_dir / "d" / ".kvfs:123abc:8").write_bytes(b"partial")
    (store_dir / "bad name").write_bytes(b"not a key")
    (store_dir / "bad dir").mkdir()
    (store_dir / "bad dir" / "k").write_bytes(b"not a key")
    assert store.keys() == ["d/k"]
    assert {entry.key for entry in store.iter_level()} == {"d/"}
    assert {entry.key for entry in store.iter_level("d/")} == {"d/k"}


def test_concurrent_writers_of_one_key_leave_one_whole_value(
    store: FilesystemStore, store_dir: pathlib.Path
) -> None:
    values = [bytes([n]) * 100_000 for n in range(6)]

    def write(value: bytes) -> None:
        for _ in range(20):
            store.put("shared/k", value)

    threads = [threading.Thread(target=write, args=(value,)) for value in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.get("shared/k") in values
    assert _all_names(store_dir) == ["shared", "shared/k"], "a temporary file was left"


# ---------------------------------------------------------------------- symbolic links


@pytest.fixture
def outside(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory outside the store with a secret file in it."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret").write_bytes(b"secret")
    return directory


def test_link_to_outside_directory_is_not_followed(
    store: FilesystemStore, store_dir: pathlib.Path, outside: pathlib.Path
) -> None:
    (store_dir / "link").symlink_to(outside, target_is_directory=True)
    for call in (store.get, store.open, store.stat):
        with pytest.raises(KeyError):
            call("link/secret")
    with pytest.raises(KeyError):
        store.get_range("link/secret", 0, 1)
    with pytest.raises(KeyError):
        store.get_file("link/secret", io.BytesIO())
    assert "link/secret" not in store
    assert not store.has_directory("link")
    store.delete("link/secret")
    store.delete_directory("link")
    with pytest.raises(NotADirectoryKeyError, match="symbolic link"):
        store.put("link/new", b"escaped?")
    with pytest.raises(NotADirectoryKeyError, match="symbolic link"):
        store.put_directory("link/sub")
    with pytest.raises(KeyError):
        store.copy("link/secret", "copied")
    with pytest.raises(KeyError):
        store.move("link/secret", "moved")
    store.put("here", b"x")
    with pytest.raises(NotADirectoryKeyError):
        store.move("here", "link/moved")
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    assert (store_dir / "link").is_symlink()
    assert store.keys() == ["here"]
    assert {entry.key for entry in store.iter_level()} == {"here"}
    assert list(store.iter_level("link/")) == []
    assert store.keys("link/") == []


def test_link_deeper_in_the_path_is_not_followed(
    store: FilesystemStore, store_dir: pathlib.Path, outside: pathlib.Path
) -> None:
    store.put("a/b/real", b"real")
    (store_dir / "a" / "b" / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(KeyError):
        store.get("a/b/link/secret")
    with pytest.raises(NotADirectoryKeyError):
        store.put("a/b/link/x", b"x")
    assert store.keys() == ["a/b/real"]
    assert {entry.key for entry in store.iter_level("a/b/")} == {"a/b/real"}
    assert sorted(os.listdir(outside)) == ["secret"]


def test_link_to_outside_file_is_not_a_key(
    store: FilesystemStore, store_dir: pathlib.Path, outside: pathlib.Path
) -> None:
    (store_dir / "k").symlink_to(outside / "secret")
    (store_dir / "d").mkdir()
    (store_dir / "d" / "k").symlink_to(outside / "secret")
    for key in ("k", "d/k"):
        for call in (store.get, store.open, store.stat):
            with pytest.raises(KeyError):
                call(key)
        assert key not in store
        store.delete(key)  # not a key: left alone, and no error
        assert (store_dir / key).is_symlink()
    assert store.keys() == []
    # A put replaces the link itself; it never writes through it.
    store.put("k", b"new value")
    store.put_file("d/k", io.BytesIO(b"new value"))
    assert (outside / "secret").read_bytes() == b"secret"
    assert not (store_dir / "k").is_symlink()
    assert store.get("k") == b"new value"
    assert store.get("d/k") == b"new value"


def test_root_may_itself_be_a_link(tmp_path: pathlib.Path, outside: pathlib.Path) -> None:
    """The root is the user's choice; only links *inside* it are refused."""
    (tmp_path / "root-link").symlink_to(outside, target_is_directory=True)
    store = FilesystemStore(tmp_path / "root-link")
    assert store.get("secret") == b"secret"
    store.put("a/b", b"x")
    assert (outside / "a" / "b").read_bytes() == b"x"


def test_fifo_where_a_key_would_be_is_not_a_key(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    os.mkfifo(store_dir / "fifo")
    for call in (store.get, store.open, store.stat):  # and none may hang waiting for a writer
        with pytest.raises(KeyError):
            call("fifo")
    assert store.keys() == []


# ---------------------------------------------------------------------- permissions


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_perm_sets_file_and_directory_modes(tmp_path: pathlib.Path, umask_022: None) -> None:
    root = tmp_path / "root"
    store = FilesystemStore(root, perm=0o604)
    store.put("flat", b"x")
    store.put_file("a/b/file", io.BytesIO(b"x"))
    source = tmp_path / "source"
    source.write_bytes(b"source")
    source.chmod(0o700)
    store.put_file("from-name", str(source))
    store.copy("flat", "copied")
    store.put_directory("empty")
    for key in ("flat", "a/b/file", "from-name", "copied"):
        assert _mode(root / key) == 0o604, key
    # Directories: perm plus the search bit wherever perm grants read.
    for directory in (root, root / "a", root / "a" / "b", root / "empty"):
        assert _mode(directory) == 0o705, directory
    assert _mode(source) == 0o700, "put_file changed the source's mode"


def test_without_perm_the_umask_decides(tmp_path: pathlib.Path, umask_022: None) -> None:
    store = FilesystemStore(tmp_path / "root")
    store.put("a/k", b"x")
    assert _mode(tmp_path / "root" / "a" / "k") == 0o644
    assert _mode(tmp_path / "root" / "a") == 0o755


# ---------------------------------------------------------------------- keys and prefixes


def test_key_and_prefix_conflict_names_the_culprit(store: FilesystemStore) -> None:
    store.put("a", b"file")
    with pytest.raises(NotADirectoryKeyError, match="'a' is a key") as info:
        store.put("a/b/c", b"below")
    assert info.value.errno == errno.ENOTDIR
    store.put("d/e", b"below")
    with pytest.raises(NotADirectoryKeyError, match="'d' is a directory") as info:
        store.put_file("d", io.BytesIO(b"file"))
    assert info.value.errno == errno.EISDIR
    with pytest.raises(NotADirectoryKeyError):
        store.copy("a", "d")
    with pytest.raises(NotADirectoryKeyError):
        store.move("a", "d")
    with pytest.raises(NotADirectoryKeyError, match="'a' is a key"):
        store.put_directory("a")
    assert store.get("a") == b"file"
    assert sorted(store.keys()) == ["a", "d/e"]


def test_move_never_moves_a_directory(store: FilesystemStore) -> None:
    store.put("d/e", b"x")
    with pytest.raises(KeyError):
        store.move("d", "elsewhere")
    assert store.keys() == ["d/e"]


def test_move_renames_into_new_directories(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    store.put("a", b"value")
    inode = os.stat(store_dir / "a").st_ino
    assert store.move("a", "x/y/z") == "x/y/z"
    assert os.stat(store_dir / "x" / "y" / "z").st_ino == inode, "move copied instead of renaming"
    assert store.keys() == ["x/y/z"]


def test_put_file_from_filename_copies(store: FilesystemStore, tmp_path: pathlib.Path) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"s" * 300_000)
    store.put_file("d/k", str(source))
    assert store.get("d/k") == b"s" * 300_000
    assert source.read_bytes() == b"s" * 300_000


def test_delete_directory_removes_only_empty_directories(
    store: FilesystemStore, store_dir: pathlib.Path
) -> None:
    store.put_directory("d/e")
    assert (store_dir / "d" / "e").is_dir()
    store.delete_directory("d")  # holds 'e': left alone
    assert (store_dir / "d" / "e").is_dir()
    store.delete_directory("d/e")
    assert not (store_dir / "d" / "e").exists()
    assert (store_dir / "d").is_dir()
    store.put("k", b"v")
    store.delete_directory("k")  # a key, not a directory: left alone
    assert store.get("k") == b"v"


def test_empty_directories_are_markers_in_the_raw_listing(store: FilesystemStore) -> None:
    store.put_directory("e")
    store.put("d/k", b"v")
    store.put_directory("d/sub")
    assert sorted(store._iter_keys("")) == ["d/k", "d/sub/", "e/"]
    assert sorted(store._iter_keys("d/")) == ["d/k", "d/sub/"]
    assert store.keys() == ["d/k"]


def test_component_of_255_bytes_is_ok_and_256_is_rejected(
    store: FilesystemStore, store_dir: pathlib.Path
) -> None:
    longest = "n" * 255
    store.put(longest, b"1")
    store.put("d/" + longest, b"2")
    assert sorted(store.keys()) == sorted([longest, "d/" + longest])
    assert (store_dir / longest).read_bytes() == b"1"
    for key in ("n" * 256, "d/" + "n" * 256):
        with pytest.raises(ValueError, match="255"):
            store.put(key, b"x")
        with pytest.raises(ValueError, match="255"):
            store.get(key)
    assert sorted(store.keys()) == sorted([longest, "d/" + longest])


# ---------------------------------------------------------------------- listing


def test_iter_level_reads_one_directory_only(
    store: FilesystemStore, store_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A level listing is one scandir, however large the subtree below it."""
    store.put("top", b"123")
    key = "big"
    for depth in range(40):
        key += f"/d{depth}"
        store.put(key + "/k", b"x")
    scanned: list[object] = []
    real_scandir = os.scandir

    def counting_scandir(path: object) -> object:
        scanned.append(path)
        return real_scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", counting_scandir)
    level = {entry.key: entry for entry in store.iter_level()}
    assert len(scanned) == 1
    assert set(level) == {"top", "big/"}
    top, big = os.stat(store_dir / "top"), os.stat(store_dir / "big")
    assert level["top"] == KeyInfo("top", 3, top.st_mtime, False, stat.S_IMODE(top.st_mode), top.st_uid, top.st_gid)
    assert level["big/"] == KeyInfo("big/", None, big.st_mtime, True, stat.S_IMODE(big.st_mode), big.st_uid, big.st_gid)
    assert {entry.key for entry in store.iter_level("big/d0/")} == {"big/d0/k", "big/d0/d1/"}
    assert len(scanned) == 2
    assert len(store.keys()) == 41  # whereas the full listing walks it all
    assert len(scanned) == 2 + 42  # the root, "big" and its 40 levels


def test_iter_level_with_a_name_prefix(store: FilesystemStore) -> None:
    for key in ("d/apple", "d/apricot", "d/ap/x", "d/banana", "d/aq"):
        store.put(key, b"v")
    assert {entry.key for entry in store.iter_level("d/ap")} == {"d/apple", "d/apricot", "d/ap/"}
    assert sorted(store.keys("d/ap")) == ["d/ap/x", "d/apple", "d/apricot"]


def test_listing_prefixes_that_climb_out_find_nothing(
    store: FilesystemStore, store_dir: pathlib.Path
) -> None:
    (store_dir.parent / "sibling").write_bytes(b"outside")
    store.put("k", b"v")
    for prefix in ("../", "..", "./", "../store/", "a//", "/", "/k"):
        assert store.keys(prefix) == [], prefix
        assert list(store.iter_level(prefix)) == [], prefix


# ---------------------------------------------------------------------- URLs


def test_url_for_gives_a_file_url(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    assert store.url_for("a/b#c") == f"file://{store_dir}/a/b%23c"


def test_web_url_for_quotes_the_key(store_dir: pathlib.Path) -> None:
    store = WebFilesystemStore(store_dir, "https://files.example/x/")
    assert store.url_for("some_key") == "https://files.example/x/some_key"
    assert store.url_for("dir/a?b#c%") == "https://files.example/x/dir/a%3Fb%23c%25"
    with pytest.raises(ValueError):
        store.url_for("../etc/passwd")


def test_web_url_prefix_may_be_callable(store_dir: pathlib.Path) -> None:
    calls: list[tuple[object, str]] = []

    def prefix(store: WebFilesystemStore, key: str) -> str:
        calls.append((store, key))
        return "https://cdn.example/"

    store = WebFilesystemStore(store_dir, prefix, perm=0o600)
    assert store.url_for("k") == "https://cdn.example/k"
    assert calls == [(store, "k")]
    assert store.perm == 0o600


def test_missing_key_below_a_missing_directory(store: FilesystemStore) -> None:
    with pytest.raises(KeyNotFoundError):
        store.get("missing/deeper")
    assert not store.has_directory("missing")


def test_get_range_with_a_huge_length_reads_only_what_is_there(store: FilesystemStore) -> None:
    store.put("d/k", b"0123456789")
    assert store.get_range("d/k", 3, 1 << 50) == b"3456789"  # no petabyte buffer
    assert store.get_range("d/k", 1 << 50, 1 << 50) == b""


# ---------------------------------------------------------------------- staging files


def test_staging_file_has_no_name_until_committed(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    store.put("d/k", b"old")
    file = store.new_staging_file("d/k")
    file.write(b"x" * 100_000)
    assert _all_names(store_dir) == ["d", "d/k"], "a staging file has a name in the store"
    store.commit_staging_file("d/k", file)
    assert _all_names(store_dir) == ["d", "d/k"], "a commit left a temporary name"
    assert (store_dir / "d" / "k").read_bytes() == b"x" * 100_000


def test_uncommitted_staging_file_leaves_nothing(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    file = store.new_staging_file("new/key")
    file.write(b"abandoned")
    file.close()
    assert "new/key" not in store
    assert _all_names(store_dir) == [], "staging made a directory or left a file"


def test_failed_commit_keeps_the_staging_file(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    store.put("a/b", b"below a")  # so 'a' is a directory and cannot be a key
    file = store.new_staging_file("a")
    file.write(b"value")
    with pytest.raises(NotADirectoryKeyError, match="'a' is a directory"):
        store.commit_staging_file("a", file)
    assert not file.closed
    assert _all_names(store_dir) == ["a", "a/b"]
    store.commit_staging_file("c", file)  # still whole, and committed elsewhere
    assert store.get("c") == b"value"
    assert _all_names(store_dir) == ["a", "a/b", "c"]


def test_commit_never_follows_a_link(
    store: FilesystemStore, store_dir: pathlib.Path, outside: pathlib.Path
) -> None:
    (store_dir / "link").symlink_to(outside, target_is_directory=True)
    file = store.new_staging_file("link/new")  # made in the root: no link is followed
    file.write(b"escaped?")
    with pytest.raises(NotADirectoryKeyError, match="symbolic link"):
        store.commit_staging_file("link/new", file)
    file.close()
    assert sorted(os.listdir(outside)) == ["secret"]
    assert _all_names(store_dir) == ["link"]


def test_staging_file_of_another_store_is_refused(tmp_path: pathlib.Path) -> None:
    first, second = FilesystemStore(tmp_path / "one"), FilesystemStore(tmp_path / "two")
    file = first.new_staging_file("k")
    with pytest.raises(ValueError, match="not an open staging file"):
        second.commit_staging_file("k", file)
    first.commit_staging_file("k", file)
    assert first.get("k") == b"" and "k" not in second


def test_committed_staging_file_gets_perm(tmp_path: pathlib.Path, umask_022: None) -> None:
    store = FilesystemStore(tmp_path / "root", perm=0o604, fsync=True)
    file = store.new_staging_file("a/k")  # no root yet: made for the staging file
    file.write(b"x")
    store.commit_staging_file("a/k", file)
    assert _mode(tmp_path / "root" / "a" / "k") == 0o604
    assert store.get("a/k") == b"x"


# ---------------------------------------------------------------------- metadata


def test_a_value_written_again_keeps_its_mode_and_owner(tmp_path: pathlib.Path, umask_022: None) -> None:
    root = tmp_path / "root"
    store = FilesystemStore(root, perm=0o644)
    store.put("a/k", b"old")
    store.set_metadata("a/k", mode=0o600, uid=65534, gid=65534)
    store.put("a/k", b"by put")
    assert (_mode(root / "a" / "k"), os.lstat(root / "a" / "k").st_uid) == (0o600, 65534)
    store.put_file("a/k", io.BytesIO(b"by put_file"))
    assert _mode(root / "a" / "k") == 0o600
    staged = store.new_staging_file("a/k")
    staged.write(b"staged")
    store.commit_staging_file("a/k", staged)
    info = os.lstat(root / "a" / "k")
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o600, 65534, 65534)
    assert store.get("a/k") == b"staged"
    store.put("a/new", b"x")
    assert _mode(root / "a" / "new") == 0o644, "perm is for new files"


def test_set_metadata_never_follows_a_link(store: FilesystemStore, store_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    (outside / "secret").chmod(0o600)
    (store_dir / "link").symlink_to(outside / "secret")
    (store_dir / "dir").symlink_to(outside)
    with pytest.raises(KeyError):
        store.set_metadata("link", mode=0o666)
    with pytest.raises(KeyError):
        store.set_metadata("dir/secret", mode=0o666)
    with pytest.raises(KeyError):
        store.set_metadata("dir", mode=0o777)
    assert _mode(outside / "secret") == 0o600
    assert _mode(outside) != 0o777


def test_set_metadata_changes_the_real_file(store: FilesystemStore, store_dir: pathlib.Path) -> None:
    store.put("d/k", b"x")
    store.set_metadata("d/k", mode=0o4750, mtime=1_500_000_000.25, atime=1_400_000_000)
    info = os.lstat(store_dir / "d" / "k")
    assert stat.S_IMODE(info.st_mode) == 0o4750
    assert (info.st_mtime_ns, info.st_atime_ns) == (1_500_000_000_250_000_000, 1_400_000_000_000_000_000)
    store.set_metadata("d", mode=0o711)
    assert _mode(store_dir / "d") == 0o711
