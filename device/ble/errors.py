"""The one error a decoder raises: callers (collector, CLI) catch exactly this and nothing else."""

from __future__ import annotations


class DecodeError(ValueError):
    """A characteristic value that does not follow its specification; the message says what and where."""
