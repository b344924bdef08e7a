"""Boot-time mounts: the ``mount.kvfs`` helper that mount(8) runs for ``fuse.kvfs`` lines.

The end-to-end test mounts with util-linux's own ``mount -T FSTAB MOUNTPOINT`` from an
fstab file of its own, which finds the helper as ``/sbin/mount.fuse.kvfs`` (installed by
the test for its duration), and unmounts with ``umount``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
from mount_support import require_fuse

from kvfs.cli.mount_helper import HelperError, main, read_credentials, translate
from kvfs.crypt import HMACDecorator
from kvfs.fs import FilesystemStore
from kvfs.mount.mounter import is_mounted

HELPER_LINK = pathlib.Path("/sbin/mount.fuse.kvfs")


# ---------------------------------------------------------------------- options


def test_generic_options_are_ignored_and_kvfs_options_translated() -> None:
    options = "rw,_netdev,nofail,noauto,user,defaults,x-systemd.automount,allow_other,read-cache-size=2G,umask=027"
    arguments, credentials = translate(options.split(","))
    assert arguments == ["--allow-other", "--read-cache-size", "2G", "--umask", "027"]
    assert credentials is None


def test_underscores_and_ro_are_understood() -> None:
    arguments, credentials = translate(["ro", "read_cache_size=0", "attr_timeout=5", "credentials=/etc/kvfs/s3.env"])
    assert arguments == ["--read-only", "--read-cache-size", "0", "--attr-timeout", "5"]
    assert credentials == "/etc/kvfs/s3.env"


def test_every_kvfs_mount_option_is_an_fstab_option() -> None:
    options = [
        "write_back",
        "transfers=16",
        "write-back-delay=2",
        "coordinate=redis://127.0.0.1:6379/0",
        "lock-lifetime=10",
        "no_check",
    ]
    arguments, _ = translate(options)
    assert arguments == [
        "--write-back",
        "--transfers",
        "16",
        "--write-back-delay",
        "2",
        "--coordinate",
        "redis://127.0.0.1:6379/0",
        "--lock-lifetime",
        "10",
        "--no-check",
    ]
    with pytest.raises(HelperError, match="unknown mount option 'foreground'"):
        translate(["foreground"])  # the helper always mounts in the background


def test_metadata_heads_is_a_flag() -> None:
    assert translate(["metadata_heads", "ro"]) == (["--metadata-heads", "--read-only"], None)


def test_an_unknown_option_is_refused_unless_sloppy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["/srv/store", "/mnt/x", "-o", "rw,colour=blue"]) == 1
    assert "unknown mount option 'colour=blue'" in capsys.readouterr().err
    assert translate(["colour=blue", "allow_other"], sloppy=True) == (["--allow-other"], None)


def test_an_option_missing_its_value_is_refused() -> None:
    with pytest.raises(Exception, match="needs a value"):
        translate(["read-cache-size"])


def test_fake_mount_shows_the_command_and_mounts_nothing(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path), str(tmp_path), "-f", "-v", "-o", "defaults,uid=0"]) == 0
    assert f"kvfs mount {tmp_path} {tmp_path} --uid 0" in capsys.readouterr().err
    assert not is_mounted(str(tmp_path))


def test_credentials_file_is_read_as_key_value_lines(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s3.env"
    path.write_text(
        "# S3 credentials\n\nAWS_ACCESS_KEY_ID=AKIA1\nexport AWS_SECRET_ACCESS_KEY='s e c=ret'\nREGION = eu\n"
    )
    assert read_credentials(str(path)) == {
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": "s e c=ret",
        "REGION": "eu",
    }


def test_a_bad_credentials_file_is_a_one_line_error_without_its_values(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.env"
    path.write_text("GOOD=1\nthis is secret and not an assignment\n")
    assert main(["/srv/store", "/mnt/x", "-o", f"credentials={path}"]) == 1
    error = capsys.readouterr().err
    assert f"{path}, line 2: expected NAME=VALUE" in error and "secret" not in error
    assert main(["/srv/store", "/mnt/x", "-o", f"credentials={tmp_path}/missing.env"]) == 1
    assert "cannot read credentials file" in capsys.readouterr().err


# ---------------------------------------------------------------------- mount(8) and umount(8)


def _require_root_and_mount() -> None:
    require_fuse()
    problem = None
    if os.geteuid() != 0:
        problem = "mount(8) with a helper in /sbin needs root"
    elif shutil.which("mount") is None or shutil.which("umount") is None:
        problem = "util-linux mount and umount are missing"
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI=true and {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def helper_installed() -> Iterator[pathlib.Path]:
    """``/sbin/mount.fuse.kvfs`` pointing at this environment's ``mount.kvfs``, for the test."""
    _require_root_and_mount()
    script = pathlib.Path(sys.executable).parent / "mount.kvfs"
    assert script.exists(), f"{script} is missing: pip install -e . installs the console script"
    try:
        os.symlink(script, HELPER_LINK)
    except FileExistsError:
        if os.path.realpath(HELPER_LINK) != os.path.realpath(script):
            pytest.fail(f"{HELPER_LINK} exists and is not this environment's helper; not replacing it")
        yield HELPER_LINK  # installed by someone else for this very environment: leave it
        return
    try:
        yield HELPER_LINK
    finally:
        HELPER_LINK.unlink()


def test_mount_from_an_fstab_line_and_umount(helper_installed: pathlib.Path, tmp_path: pathlib.Path) -> None:
    store_dir = tmp_path / "store"
    store_dir.mkdir()  # a directory store must exist (or the URL say create=1)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    secret_file = tmp_path / "kvfs.env"
    secret_file.write_text("KVFS_FSTAB_TEST_SECRET=from-the-credentials-file\n")
    secret_file.chmod(0o600)
    fstab = tmp_path / "fstab"
    # The HMAC secret comes from the credentials file: the mount works only if it was read.
    source = f"file://{store_dir}?hmac_secret_env=KVFS_FSTAB_TEST_SECRET"
    options = f"rw,_netdev,nofail,defaults,allow_other,read-cache-size=64M,credentials={secret_file}"
    fstab.write_text(f"# a test's own fstab\n{source} {mountpoint} fuse.kvfs {options} 0 0\n")
    environment = {name: value for name, value in os.environ.items() if name != "KVFS_FSTAB_TEST_SECRET"}
    try:
        result = subprocess.run(
            ["mount", "-T", str(fstab), str(mountpoint)], capture_output=True, text=True, env=environment, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert is_mounted(str(mountpoint))
        (mountpoint / "hello.txt").write_bytes(b"booted")
        assert (mountpoint / "hello.txt").read_bytes() == b"booted"
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            line = next(line for line in mounts if f" {mountpoint} " in line)
        assert "fuse.kvfs" in line and "from-the-credentials-file" not in line
    finally:
        if is_mounted(str(mountpoint)):
            result = subprocess.run(["umount", str(mountpoint)], capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not is_mounted(str(mountpoint))
    signed = HMACDecorator(b"from-the-credentials-file", FilesystemStore(store_dir))
    assert signed.get("hello.txt") == b"booted"


def test_a_failed_mount_is_exit_status_32_with_the_reason(
    helper_installed: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"nosuchscheme://x {mountpoint} fuse.kvfs defaults 0 0\n")
    result = subprocess.run(["mount", "-T", str(fstab), str(mountpoint)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 32
    assert "unknown store URL scheme" in result.stderr
    assert not is_mounted(str(mountpoint))
