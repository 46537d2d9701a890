"""Errors that the CLI turns into a one-line message and exit code 2.

Every user-facing mistake (bad name, bad size, unreadable file, wrong checkpoint) raises a
:class:`MetaganError` whose message names the problem and what would be valid. The CLI prints
``metagan: error: <message>`` and exits with status 2; nothing is half-written because every
file the toolkit writes goes through :func:`metagan.io.atomic_write`.
"""

from __future__ import annotations

import math


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


SEED_MAX = 2**63 - 2  # seeds go to torch and numpy generators (64-bit), and seed + 1 is used


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, what: str = ""
) -> None:
    """A one-line ConfigError unless ``value`` is finite and in ``[low, high]`` (``(low, high]``
    with ``low_open``): rates and sizes of a config never take inf, nan or absurd values."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low)
    if not (ok and value <= high):
        bounds = f"{'(' if low_open else '['}{_num(low)}, {_num(high)}]"
        raise ConfigError(f"{name} must be {what + ' ' if what else ''}in {bounds}, got {value!r}")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e19 else f"{x:g}"


def cause(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for a one-line report."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
