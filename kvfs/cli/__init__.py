"""The ``kvfs`` command line: browse any store and move blobs between stores.

Needs the ``cli`` extra (``pip install 'kvfs[cli]'``: click, and tqdm for progress bars).
The verbs are in :mod:`kvfs.cli.browse` and :mod:`kvfs.cli.transfers`; the click group in
:mod:`kvfs.cli.main`; exit codes in :mod:`kvfs.cli.errors`.
"""

from __future__ import annotations

from .main import cli, main

__all__ = ["cli", "main"]
