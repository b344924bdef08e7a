"""POSIX rules a mount keeps (found with pjdfstest, see scripts/conformance): names, times, owners."""

from __future__ import annotations

import errno
import os
import pathlib
import stat
import subprocess
import tempfile

import pytest
from mount_support import mnt, mount_store, store  # noqa: F401 - fixtures

PAST = 1_000_000_000  # 2001, in seconds
NOBODY = 65534


def _errno_of(call, *args) -> int:
    with pytest.raises(OSError) as raised:
        call(*args)
    return raised.value.errno


def test_a_name_longer_than_255_bytes_is_enametoolong(mnt: pathlib.Path) -> None:
    long = "x" * 256
    assert _errno_of(os.stat, mnt / long) == errno.ENAMETOOLONG
    assert _errno_of(os.mkdir, mnt / long) == errno.ENAMETOOLONG
    assert _errno_of(open, mnt / long, "w") == errno.ENAMETOOLONG
    (mnt / long[1:]).write_bytes(b"")  # 255 bytes: fine
    assert os.listdir(mnt) == [long[1:]]


def test_a_path_through_a_file_is_enotdir(mnt: pathlib.Path) -> None:
    (mnt / "file").write_bytes(b"")
    assert _errno_of(os.stat, mnt / "file" / "x") == errno.ENOTDIR
    assert _errno_of(os.mkdir, mnt / "file" / "x") == errno.ENOTDIR


def test_adding_and_removing_names_moves_the_directorys_times(mnt: pathlib.Path) -> None:
    os.mkdir(mnt / "d")
    for change in (
        lambda: (mnt / "d" / "f").write_bytes(b""),
        lambda: os.mkdir(mnt / "d" / "sub"),
        lambda: os.rename(mnt / "d" / "f", mnt / "d" / "g"),
        lambda: os.unlink(mnt / "d" / "g"),
        lambda: os.rmdir(mnt / "d" / "sub"),
        lambda: os.symlink("t", mnt / "d" / "l"),
        lambda: os.mkfifo(mnt / "d" / "p"),
    ):
        os.utime(mnt / "d", (PAST, PAST))
        change()
        info = os.stat(mnt / "d")
        assert info.st_mtime > PAST and info.st_ctime > PAST


def test_a_new_directory_has_times_of_its_own(mnt: pathlib.Path) -> None:
    os.utime(mnt, (PAST, PAST))
    os.mkdir(mnt / "new")
    assert os.stat(mnt / "new").st_mtime > PAST


def test_ctime_moves_with_every_change(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"x")
    os.utime(mnt / "f", (PAST, PAST))
    info = os.stat(mnt / "f")
    assert info.st_mtime == PAST and info.st_ctime > PAST  # utime is a change too
    before = info.st_ctime_ns
    for change, name in (
        (lambda: os.chmod(mnt / "f", 0o600), "f"),
        (lambda: os.rename(mnt / "f", mnt / "g"), "g"),
        (lambda: os.truncate(mnt / "g", 0), "g"),
    ):
        change()
        after = os.stat(mnt / name).st_ctime_ns
        assert after >= before
        before = after


def test_a_file_past_5_tib_is_efbig(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"")
    assert _errno_of(os.truncate, mnt / "f", 6 << 40) == errno.EFBIG
    assert os.stat(mnt / "f").st_size == 0


def _as_nobody(action) -> int:
    """Run *action* in a child process as the user nobody: 0, or the errno of its ``OSError``."""
    pid = os.fork()
    if pid == 0:  # the child: syscalls only, then out
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            action()
        except OSError as error:
            code = error.errno or 255
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def shared(store):
    """*store* mounted for every user (``allow_other``), by root, where every user reaches it."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to act as another user")
    with tempfile.TemporaryDirectory(prefix="kvfs-shared-") as directory:
        os.chmod(directory, 0o755)  # pytest's own directories are private to root
        with mount_store(store, pathlib.Path(directory) / "mnt", allow_other=True) as path:
            os.chmod(path, 0o777)
            yield path


def test_a_write_by_another_user_clears_the_set_user_id_bit(shared: pathlib.Path) -> None:
    (shared / "tool").write_bytes(b"")
    os.chmod(shared / "tool", 0o4777)
    assert _as_nobody(lambda: (shared / "tool").open("ab").write(b"x")) == 0
    assert stat.S_IMODE(os.stat(shared / "tool").st_mode) == 0o777


def test_the_sticky_bit_keeps_others_from_removing_a_file(shared: pathlib.Path) -> None:
    os.mkdir(shared / "tmp", 0o1777)
    os.chmod(shared / "tmp", 0o1777)
    (shared / "tmp" / "roots").write_bytes(b"")
    assert _as_nobody(lambda: os.unlink(shared / "tmp" / "roots")) == errno.EPERM
    assert (shared / "tmp" / "roots").exists()


def test_only_root_gives_a_file_away(shared: pathlib.Path) -> None:
    assert _as_nobody(lambda: (shared / "mine").write_bytes(b"")) == 0
    assert _as_nobody(lambda: os.chown(shared / "mine", 0, 0)) == errno.EPERM
    assert os.stat(shared / "mine").st_uid == NOBODY


def test_ls_a_shows_the_dot_entries(mnt: pathlib.Path) -> None:
    os.mkdir(mnt / "d")
    (mnt / "d" / "f").write_bytes(b"")
    listed = subprocess.run(["ls", "-a", str(mnt / "d")], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == [".", "..", "f"]
