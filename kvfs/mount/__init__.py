"""The FUSE view of a store: ``kvfs mount STORE MOUNTPOINT`` and :func:`mounted`.

Importing this package loads nothing FUSE-related; :func:`mounted`, :func:`serve` and
:func:`start_daemon` need the ``mount`` extra (``pip install 'kvfs[mount]'``, which
brings mfusepy) and libfuse3 (the ``fuse3`` system package). See ``docs/mount.rst``.
"""

from __future__ import annotations

from .errors import FuseUnavailableError, MountError
from .mounter import is_mounted, mounted, serve, start_daemon, unmount
from .options import MountOptions

__all__ = ["mounted", "serve", "start_daemon", "unmount", "is_mounted", "MountOptions", "MountError", "FuseUnavailableError"]
