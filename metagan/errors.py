"""Errors that the CLI turns into a one-line message and exit code 2.

Every user-facing mistake (bad name, bad size, unreadable file, wrong checkpoint) raises a
:class:`MetaganError` whose message names the problem and what would be valid. The CLI prints
``metagan: error: <message>`` and exits with status 2; nothing is half-written because every
file the toolkit writes goes through :func:`metagan.io.atomic_write`.
"""

from __future__ import annotations


class MetaganError(Exception):
    """A problem with the user's input, reported in one line; exit code 2."""

    exit_code = 2


class UnknownNameError(MetaganError, KeyError):
    """A name that no plugin registered (dataset, architecture, algorithm or loss)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(MetaganError):
    """An unknown config key, a value of the wrong type or out of range."""


class DataError(MetaganError):
    """Unreadable images, too few images in a class, mixed sizes, a missing data path."""


class CheckpointError(MetaganError):
    """A missing, corrupt or incompatible checkpoint."""


class PluginError(MetaganError):
    """A plugin that failed to load, registered a duplicate name or implemented an unknown hook."""


class TrainingDiverged(MetaganError):
    """Too many consecutive meta-steps were skipped because of non-finite values."""
