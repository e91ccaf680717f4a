"""Notes: what the user should know about a run that goes on (a damaged cache entry
recomputed, a cache that cannot be written). Issued as Python warnings of class ``Note``;
the command line shows each as one line ``seedopt: note: ...``."""

from __future__ import annotations

import warnings


class Note(UserWarning):
    """Something the user should know; the run goes on."""


def note(message: str) -> None:
    """Issue ``message`` as a ``Note``."""
    warnings.warn(message, Note, stacklevel=2)
