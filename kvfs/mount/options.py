"""The settings of one mount."""

from __future__ import annotations

from dataclasses import dataclass

from ..coordination.leases import DEFAULT_LEASE_LIFETIME

#: Default memory for staged writes of all open files together, before spilling to disk.
DEFAULT_CACHE_SIZE = 256 * 1024 * 1024
#: Default number of upload workers of a write-back mount.
DEFAULT_TRANSFERS = 8
#: Default of ``write_back_delay``, in seconds.
DEFAULT_WRITE_BACK_DELAY = 5.0
#: Default bound of the read cache (local copies of values on remote stores).
DEFAULT_READ_CACHE_SIZE = 1024 * 1024 * 1024


@dataclass(frozen=True)
class MountOptions:
    """How a store is shown. Every field has a default; see ``docs/mount.rst``.

    ``uid``/``gid`` default to the user who mounts; ``umask`` masks the default modes
    (``0o666`` files, ``0o777`` directories). ``attr_timeout`` and ``listing_timeout``
    are cache lifetimes in seconds (also the kernel's entry and attribute timeouts):
    changes made outside the mount show after at most that long. ``cache_size`` bounds
    the memory of staged writes; beyond it they go to temporary files in ``cache_dir``
    (the system's temporary directory when None). ``read_cache_size`` bounds the local
    copies of values a mount of a remote store keeps after writing or reading them
    (small ones in memory, large ones in temporary files in ``cache_dir``); 0 turns
    that cache off.

    With ``write_back`` a file's ``close()`` returns once its content is on local disk,
    in the journal in ``journal_dir`` (by default one directory per store under
    ``$XDG_CACHE_HOME/kvfs/journal``), made durable with ``fsync`` unless
    ``journal_fsync`` is False; ``transfers`` workers upload the changes in the
    background, once no new change has come for a tenth of a second, or once a change has
    waited ``write_back_delay`` seconds while others kept coming (0: at once). See
    "Write-back" in ``docs/mount.rst``.

    ``metadata_heads``: on a store that keeps modes, owners and times but whose listings
    do not carry them (S3), ask each listed file's with one ``HEAD`` (in parallel), so
    they show exactly right after a mount. See "Modes, owners and times".

    ``coordinate`` names a coordination engine (``redis://…`` or ``postgresql://…``)
    shared by every mount of the store: changes are announced to the others, theirs
    drop this mount's caches at once. ``coordinate_store`` is the
    store's URL, which names the channel (``kvfs mount`` passes its URL). With
    ``coordinate``, ``flock`` and ``fcntl`` locks are leases in the engine, renewed
    every third of ``lock_lifetime`` seconds while the mount lives: a dead mount's locks
    free themselves after that long. See "Many hosts" in ``docs/mount.rst``.
    """

    read_only: bool = False
    uid: int | None = None
    gid: int | None = None
    umask: int = 0o022
    attr_timeout: float = 1.0
    listing_timeout: float = 1.0
    cache_size: int = DEFAULT_CACHE_SIZE
    cache_dir: str | None = None
    metadata_heads: bool = False
    read_cache_size: int = DEFAULT_READ_CACHE_SIZE
    allow_other: bool = False
    write_back: bool = False
    journal_dir: str | None = None
    journal_fsync: bool = True
    transfers: int = DEFAULT_TRANSFERS
    write_back_delay: float = DEFAULT_WRITE_BACK_DELAY
    coordinate: str | None = None
    coordinate_store: str | None = None
    lock_lifetime: float = DEFAULT_LEASE_LIFETIME

    def __post_init__(self) -> None:
        if self.attr_timeout < 0 or self.listing_timeout < 0:
            raise ValueError("cache lifetimes must not be negative")
        if self.cache_size < 0 or self.read_cache_size < 0:
            raise ValueError("cache sizes must not be negative")
        if not 0 <= self.umask <= 0o777:
            raise ValueError(f"umask must be between 0 and 0o777, not {self.umask:o}")
        if not self.lock_lifetime > 0:
            raise ValueError(f"lock_lifetime must be above 0 seconds, not {self.lock_lifetime}")
        if self.transfers < 1:
            raise ValueError(f"transfers must be at least 1, not {self.transfers}")
        if self.write_back_delay < 0:
            raise ValueError(f"write_back_delay must not be negative, not {self.write_back_delay}")
        for name in ("uid", "gid"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")


__all__ = [
    "MountOptions",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_READ_CACHE_SIZE",
    "DEFAULT_TRANSFERS",
    "DEFAULT_WRITE_BACK_DELAY",
]
