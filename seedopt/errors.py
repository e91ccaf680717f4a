"""Errors that the command line reports as one clear line (exit code 2)."""

from __future__ import annotations


class SeedoptError(Exception):
    """Bad input or an impossible request; its message is shown to the user as is."""

    exit_code = 2


class BackendUnavailableError(SeedoptError):
    """An explicitly requested backend cannot run here; the message says why."""
