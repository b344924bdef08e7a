"""``python -m kvfs.cli``: the same as the ``kvfs`` command."""

from .main import main

main()
