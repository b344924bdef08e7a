"""A tiny FUSE filesystem for tests/test_mount_coordination.py, run as its own process.

``python kernel_invalidation_fs.py MOUNTPOINT`` mounts files held in a dictionary with
long kernel cache lifetimes (``kernel_cache``, 60 s attribute and entry timeouts), using
:class:`kvfs.mount.coordination.KernelInvalidator`. It prints ``ready`` once mounted and
then obeys lines on standard input: ``set PATH TEXT`` changes a file without telling the
kernel, ``inval PATH`` calls the invalidator and prints its return value, ``quit``
unmounts.
"""

from __future__ import annotations

import errno
import stat
import subprocess
import sys
import threading

import mfusepy

from kvfs.mount.coordination import KernelInvalidator

files = {"/f": b"AAAA", "/d/g": b"1111"}
invalidator = KernelInvalidator()
mounted = threading.Event()


class Files(mfusepy.Operations):
    use_ns = True

    def init_with_config(self, conn: object, config: object) -> None:  # as the kvfs mount's
        invalidator.capture()
        mounted.set()

    def destroy(self, path: str) -> None:
        invalidator.release()

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        if path in ("/", "/d"):
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, "st_mtime": 10**18}
        if path in files:
            return {"st_mode": stat.S_IFREG | 0o644, "st_nlink": 1, "st_size": len(files[path]), "st_mtime": 10**18}
        raise mfusepy.FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh: int) -> list[str]:
        inside = "" if path == "/" else path
        names = {name[len(inside) + 1 :].split("/")[0] for name in files if name.startswith(inside + "/")}
        return [".", "..", *sorted(names)]

    def open(self, path: str, flags: int) -> int:
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return files[path][offset : offset + size]


def obey(mountpoint: str) -> None:
    mounted.wait()
    print("ready", invalidator.active, flush=True)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "set":
            path, _, text = rest.partition(" ")
            files[path] = text.encode()
            print("ok", flush=True)
        elif command == "inval":
            print(invalidator.invalidate(rest), flush=True)
        else:
            break
    subprocess.run(["fusermount3", "-u", mountpoint], check=False)


if __name__ == "__main__":
    threading.Thread(target=obey, args=(sys.argv[1],), daemon=True).start()
    mfusepy.FUSE(
        Files(), sys.argv[1], foreground=True, kernel_cache=True, attr_timeout=60, entry_timeout=60, negative_timeout=0
    )
