"""The exceptions of the mount (importing this loads nothing FUSE-related)."""

from __future__ import annotations

from ..errors import KvfsError


class MountError(KvfsError, OSError):
    """A mount or unmount failed; the message says why, in one line."""


class FuseUnavailableError(KvfsError, OSError):
    """FUSE cannot be used on this machine: no libfuse3, no ``/dev/fuse`` or no ``fusermount3``."""


__all__ = ["MountError", "FuseUnavailableError"]
