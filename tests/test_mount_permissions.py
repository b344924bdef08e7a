"""Modes and owners through a real mount: shown, enforced for other users, and lasting.

A filesystem store keeps them on its real files (``keeps_metadata``): the mount shows
them, the kernel enforces them (``default_permissions``) for every user of an
``--allow-other`` mount, and chmod, chown, utime, new files and directories write them
through, so they survive a remount. Another user is played by ``nobody``, with
``setpriv``; the tests run as root, as every mount test does.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
from mount_support import mount_store, require_fuse

from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore

NOBODY = 65534

#: Run by ``nobody``: each argument is ``OPERATION:PATH``; prints one result per line,
#: ``ok`` or the errno's name. A system Python: the test's own may sit in a private directory.
_PROBE = """
import errno, os, sys
for argument in sys.argv[1:]:
    operation, path = argument.split(":", 1)
    try:
        if operation == "read":
            with open(path, "rb") as file:
                file.read()
        elif operation == "write":
            with open(path, "ab") as file:
                file.write(b"!")
        elif operation == "list":
            os.listdir(path)
        elif operation == "create":
            os.umask(0o027)
            with open(path, "wb") as file:
                file.write(b"mine")
        elif operation == "mkdir":
            os.umask(0o027)
            os.mkdir(path)
        elif operation == "chmod":
            os.chmod(path, 0o666)
        print("ok")
    except OSError as error:
        print(errno.errorcode[error.errno])
"""


def as_nobody(*operations: str) -> list[str]:
    """Run *operations* (``read:PATH``, ...) as the unprivileged user ``nobody``."""
    if os.geteuid() != 0:
        pytest.skip("playing another user needs root")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")
    setpriv = shutil.which("setpriv")
    assert python is not None and setpriv is not None, "setpriv (util-linux) and python3 are needed"
    result = subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python, "-c", _PROBE, *operations],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def shared_dir() -> Iterator[pathlib.Path]:
    """A directory every user may pass through (pytest's own are root-only), for mountpoints."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="kvfs-permissions-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def fs_store(root: pathlib.Path) -> FilesystemStore:
    return FilesystemStore(root)


def _mode_and_owner(path: pathlib.Path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def test_a_private_file_stays_private_with_allow_other(
    fs_store: FilesystemStore, root: pathlib.Path, shared_dir: pathlib.Path
) -> None:
    fs_store.put("secret", b"root only")
    fs_store.put("public", b"for all")
    fs_store.put("closed/inside", b"behind a closed directory")
    (root / "secret").chmod(0o600)
    (root / "public").chmod(0o644)
    (root / "closed").chmod(0o700)
    with mount_store(fs_store, shared_dir / "mnt", allow_other=True) as mnt:
        assert _mode_and_owner(mnt / "secret") == (0o600, 0, 0)
        assert _mode_and_owner(mnt / "closed") == (0o700, 0, 0)
        listed = {entry.name: entry.stat(follow_symlinks=False) for entry in os.scandir(mnt)}
        assert stat.S_IMODE(listed["secret"].st_mode) == 0o600 and listed["secret"].st_uid == 0
        results = as_nobody(
            f"read:{mnt / 'public'}",
            f"read:{mnt / 'secret'}",
            f"write:{mnt / 'public'}",
            f"list:{mnt / 'closed'}",
            f"read:{mnt / 'closed' / 'inside'}",
            f"chmod:{mnt / 'secret'}",
        )
        assert results == ["ok", "EACCES", "EACCES", "EACCES", "EACCES", "EPERM"]
        assert (mnt / "secret").read_bytes() == b"root only"  # root still may
    assert fs_store.get("public") == b"for all"
    assert _mode_and_owner(root / "secret") == (0o600, 0, 0)


def test_chmod_and_chown_survive_a_remount(fs_store: FilesystemStore, root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        (mnt / "f").write_bytes(b"x")
        os.mkdir(mnt / "d")
        (mnt / "d" / "g").write_bytes(b"y")
        os.chmod(mnt / "f", 0o640)
        os.chown(mnt / "f", 1234, 5678)
        os.chmod(mnt / "d", 0o710)
        os.chown(mnt / "d", 42, 43)
        assert _mode_and_owner(mnt / "f") == (0o640, 1234, 5678)
        assert _mode_and_owner(mnt / "d") == (0o710, 42, 43)
    # Kept on the real files, where the store and any other program see them.
    assert _mode_and_owner(root / "f") == (0o640, 1234, 5678)
    assert _mode_and_owner(root / "d") == (0o710, 42, 43)
    assert fs_store.stat("f").mode == 0o640
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        assert _mode_and_owner(mnt / "f") == (0o640, 1234, 5678)
        assert _mode_and_owner(mnt / "d") == (0o710, 42, 43)
        listed = {entry.name: entry.stat(follow_symlinks=False) for entry in os.scandir(mnt)}
        assert (stat.S_IMODE(listed["f"].st_mode), listed["f"].st_uid) == (0o640, 1234)
        assert (stat.S_IMODE(listed["d"].st_mode), listed["d"].st_uid) == (0o710, 42)
        assert (mnt / "d" / "g").read_bytes() == b"y"


def test_utime_survives_a_remount(fs_store: FilesystemStore, root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    mtime_ns, atime_ns = 1_600_000_000_500_000_000, 1_500_000_000_250_000_000
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        (mnt / "f").write_bytes(b"x")
        os.mkdir(mnt / "d")
        os.utime(mnt / "f", ns=(atime_ns, mtime_ns))
        os.utime(mnt / "d", ns=(atime_ns, mtime_ns))
        assert (mnt / "f").stat().st_mtime_ns == mtime_ns
        assert (mnt / "f").stat().st_atime_ns == atime_ns
    for path in (root / "f", root / "d"):
        assert (os.lstat(path).st_mtime_ns, os.lstat(path).st_atime_ns) == (mtime_ns, atime_ns), path
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        assert (mnt / "f").stat().st_mtime_ns == mtime_ns
        assert (mnt / "d").stat().st_mtime_ns == mtime_ns


def test_utime_of_a_file_being_written_outlasts_its_upload(
    fs_store: FilesystemStore, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        with open(mnt / "f", "wb") as file:
            file.write(b"data")
            file.flush()
            os.utime(file.fileno(), ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
            os.fchmod(file.fileno(), 0o604)
        assert (mnt / "f").stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert os.lstat(root / "f").st_mtime_ns == 1_000_000_000_000_000_000
    assert _mode_and_owner(root / "f")[0] == 0o604
    assert fs_store.get("f") == b"data"


def test_a_rewrite_keeps_the_mode_and_owner(fs_store: FilesystemStore, root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    fs_store.put("f", b"old")
    fs_store.set_metadata("f", mode=0o600, uid=1234, gid=5678)
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        (mnt / "f").write_bytes(b"new value, replacing the file")  # O_TRUNC, staged, then a rename
        assert _mode_and_owner(root / "f") == (0o600, 1234, 5678)
        with open(mnt / "f", "ab") as file:
            file.write(b" and more")
        assert _mode_and_owner(root / "f") == (0o600, 1234, 5678)
        os.truncate(mnt / "f", 3)
        assert _mode_and_owner(root / "f") == (0o600, 1234, 5678)
        assert _mode_and_owner(mnt / "f") == (0o600, 1234, 5678)
    assert fs_store.get("f") == b"new"


def test_new_files_and_directories_get_their_creators_mode_and_owner(
    fs_store: FilesystemStore, root: pathlib.Path, shared_dir: pathlib.Path
) -> None:
    with mount_store(fs_store, shared_dir / "mnt", allow_other=True) as mnt:
        os.mkdir(mnt / "open")
        os.chmod(mnt / "open", 0o777)
        # nobody creates with umask 027: the kernel passes the mode after the umask.
        assert as_nobody(f"create:{mnt / 'open' / 'mine'}", f"mkdir:{mnt / 'open' / 'sub'}") == ["ok", "ok"]
        assert _mode_and_owner(mnt / "open" / "mine") == (0o640, NOBODY, NOBODY)
        assert _mode_and_owner(mnt / "open" / "sub") == (0o750, NOBODY, NOBODY)
        fd = os.open(mnt / "open" / "root-only", os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    assert _mode_and_owner(root / "open" / "mine") == (0o640, NOBODY, NOBODY)
    assert _mode_and_owner(root / "open" / "sub") == (0o750, NOBODY, NOBODY)
    assert _mode_and_owner(root / "open" / "root-only") == (0o600, 0, 0)
    assert fs_store.get("open/mine") == b"mine"


def test_a_renamed_directory_keeps_its_mode_and_owner(
    fs_store: FilesystemStore, root: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        os.makedirs(mnt / "a" / "inner")
        (mnt / "a" / "inner" / "f").write_bytes(b"x")
        os.chmod(mnt / "a", 0o701)
        os.chown(mnt / "a" / "inner", 7, 8)
        os.chmod(mnt / "a" / "inner" / "f", 0o604)
        os.rename(mnt / "a", mnt / "b")
        assert _mode_and_owner(mnt / "b")[0] == 0o701
    assert _mode_and_owner(root / "b")[0] == 0o701
    assert _mode_and_owner(root / "b" / "inner")[1:] == (7, 8)
    assert _mode_and_owner(root / "b" / "inner" / "f")[0] == 0o604


def test_a_store_without_metadata_keeps_modes_in_memory(tmp_path: pathlib.Path) -> None:
    store = DictStore()
    with mount_store(store, tmp_path / "mnt") as mnt:
        (mnt / "f").write_bytes(b"x")
        os.chmod(mnt / "f", 0o600)
        assert _mode_and_owner(mnt / "f")[0] == 0o600
    with mount_store(store, tmp_path / "mnt") as mnt:
        assert _mode_and_owner(mnt / "f")[0] == 0o644  # the default (umask 022): not kept
    with pytest.raises(NotImplementedError):
        store.set_metadata("f", mode=0o600)


def test_chmod_of_a_missing_name_and_the_set_user_id_bit(fs_store: FilesystemStore, tmp_path: pathlib.Path) -> None:
    with mount_store(fs_store, tmp_path / "mnt") as mnt:
        with pytest.raises(FileNotFoundError):
            os.chmod(mnt / "missing", 0o600)
        assert not (mnt / "missing").exists()
        (mnt / "f").write_bytes(b"x")
        os.chmod(mnt / "f", 0o4755)  # set-user-ID kept, as on a disk
        assert _mode_and_owner(mnt / "f")[0] == 0o4755


def _kvfs(*arguments: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvfs.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("url", "options", "warned"),
    [
        ("memory://", [], "read every file"),
        ("memory://", ["--umask", "000"], "read, change and delete every file"),
        ("memory://", ["--umask", "077"], None),
        ("memory://", ["--umask", "000", "--read-only"], "read every file"),
        ("FS", [], None),
    ],
    ids=["memory", "memory-umask-000", "memory-umask-077", "memory-read-only", "filesystem"],
)
def test_allow_other_warns_where_the_store_keeps_no_modes(
    tmp_path: pathlib.Path, url: str, options: list[str], warned: str | None
) -> None:
    require_fuse()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    if url == "FS":
        (tmp_path / "store").mkdir()
        url = f"file://{tmp_path / 'store'}"
    result = _kvfs("mount", "--allow-other", *options, url, mountpoint)
    assert result.returncode == 0, result.stderr
    try:
        if warned is None:
            assert "Warning" not in result.stderr
        else:
            assert f"every user of this machine can {warned} in {mountpoint}" in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
    finally:
        assert _kvfs("unmount", mountpoint).returncode == 0


def test_a_private_store_root_keeps_its_files_private(
    fs_store: FilesystemStore, root: pathlib.Path, shared_dir: pathlib.Path
) -> None:
    fs_store.put("f", b"readable, in a private directory")
    (root / "f").chmod(0o644)
    root.chmod(0o700)
    with mount_store(fs_store, shared_dir / "mnt", allow_other=True) as mnt:
        assert _mode_and_owner(mnt) == (0o700, 0, 0)
        assert as_nobody(f"read:{mnt / 'f'}", f"list:{mnt}") == ["EACCES", "EACCES"]
        os.chmod(mnt, 0o755)  # the top directory's changes live in memory
        assert as_nobody(f"read:{mnt / 'f'}") == ["ok"]
    assert _mode_and_owner(root)[0] == 0o700


def test_describe_root(fs_store: FilesystemStore, root: pathlib.Path) -> None:
    assert fs_store.describe_root() is None  # no root yet
    fs_store.put("k", b"x")
    root.chmod(0o710)
    info = fs_store.describe_root()
    assert info is not None and (info.key, info.is_prefix, info.mode, info.uid) == ("", True, 0o710, os.getuid())
    assert DictStore().describe_root() is None
