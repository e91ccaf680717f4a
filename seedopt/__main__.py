"""``python -m seedopt``: the same as the ``seedopt`` command."""

from .cli import main

main()
