"""Random sequences of file operations on a mount and on a local directory must agree.

A Hypothesis state machine applies the same create / write-at-offset / truncate / append /
rename / unlink / mkdir / rmdir / read steps to a real mount and to a plain temporary
directory, and requires the same outcome each time: the same errno on failure, the same
contents and listings on success.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from mount_support import make_store, mount_store, require_fuse

NAMES = st.sampled_from(["a", "b", "c d", "x%", "d1/a", "d1/b", "d1/d2/a", "d2/a", "d1", "d2", "d1/d2"])
DATA = st.binary(max_size=3000)
OFFSETS = st.integers(min_value=0, max_value=5000)


def outcome(action) -> object:
    """What *action* returned, or the errno it failed with."""
    try:
        return ("ok", action())
    except OSError as error:
        return ("errno", error.errno)


def write_at(path: pathlib.Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def append(path: pathlib.Path, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def snapshot(root: pathlib.Path) -> dict[str, object]:
    found: dict[str, object] = {}
    for directory, subdirectories, files in os.walk(root):
        relative = os.path.relpath(directory, root)
        found[relative] = sorted(subdirectories + files)
        for name in files:
            found[os.path.join(relative, name)] = (pathlib.Path(directory) / name).read_bytes()
    return found


class MountMatchesDisk(RuleBasedStateMachine):
    kind = "dict"

    def __init__(self) -> None:
        super().__init__()
        self._exit = contextlib.ExitStack()
        self._temporary = pathlib.Path(self._exit.enter_context(tempfile.TemporaryDirectory()))
        self.disk = self._temporary / "disk"
        self.disk.mkdir()
        self.store = make_store(self.kind, self._temporary)
        self._exit.callback(self.store.close)
        self.mnt = self._exit.enter_context(mount_store(self.store, self._temporary / "mnt"))

    def teardown(self) -> None:
        self._exit.close()

    def both(self, action) -> None:
        on_mount, on_disk = outcome(lambda: action(self.mnt)), outcome(lambda: action(self.disk))
        assert on_mount == on_disk

    @rule(name=NAMES, data=DATA)
    def create(self, name: str, data: bytes) -> None:
        self.both(lambda root: (root / name).write_bytes(data))

    @rule(name=NAMES, offset=OFFSETS, data=DATA)
    def write_at_offset(self, name: str, offset: int, data: bytes) -> None:
        self.both(lambda root: write_at(root / name, offset, data))

    @rule(name=NAMES, size=OFFSETS)
    def truncate(self, name: str, size: int) -> None:
        self.both(lambda root: os.truncate(root / name, size))

    @rule(name=NAMES, data=DATA)
    def append(self, name: str, data: bytes) -> None:
        self.both(lambda root: append(root / name, data))

    @rule(source=NAMES, dest=NAMES)
    def rename(self, source: str, dest: str) -> None:
        self.both(lambda root: os.rename(root / source, root / dest))

    @rule(name=NAMES)
    def unlink(self, name: str) -> None:
        self.both(lambda root: os.unlink(root / name))

    @rule(name=NAMES)
    def mkdir(self, name: str) -> None:
        self.both(lambda root: os.mkdir(root / name))

    @rule(name=NAMES)
    def rmdir(self, name: str) -> None:
        self.both(lambda root: os.rmdir(root / name))

    @rule(name=NAMES)
    def read(self, name: str) -> None:
        self.both(lambda root: (root / name).read_bytes())

    @rule(name=NAMES, data=DATA)
    def write_unlink_while_open(self, name: str, data: bytes) -> None:
        def action(root: pathlib.Path) -> bytes:
            with open(root / name, "w+b") as file:
                file.write(data)
                file.flush()
                os.unlink(root / name)
                file.seek(0)
                return file.read()

        self.both(action)

    @invariant()
    def same_tree(self) -> None:
        assert snapshot(self.mnt) == snapshot(self.disk)


SETTINGS = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("kind", ["dict", "fs", "sql"])
def test_mount_matches_local_disk(kind: str) -> None:
    require_fuse()
    machine = type(f"MountMatchesDisk_{kind}", (MountMatchesDisk,), {"kind": kind})
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=SETTINGS)
