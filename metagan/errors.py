"""Errors that the CLI turns into a one-line message and exit code 2.

Every user-facing mistake (bad name, bad size, unreadable file, wrong checkpoint) raises a
:class:`MetaganError` whose message names the problem and what would be valid. The CLI prints
``metagan: error: <message>`` and exits with status 2; nothing is half-written because every
file the toolkit writes goes through :func:`metagan.io.atomic_write`.
"""

from __future__ import annotations

import math
import operator
import re


class MetaganError(Exception):
    """A problem with the user's input, reported in one line; exit code 2.

    User input quoted in the message (a path, a value) is cut to a readable length
    (:func:`shorten`): a 10 MB ``run.out`` is not echoed whole."""

    exit_code = 2

    def __init__(self, *args):
        super().__init__(*(shorten(a) if isinstance(a, str) else a for a in args))


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


QUOTE_MAX = 240  # characters of one unbroken piece of user input that a message quotes


def shorten(text: str, limit: int = QUOTE_MAX) -> str:
    """``text`` with every unbroken run of more than ``limit`` characters (a pasted file, a
    10 MB path) cut in its middle to ``head…[N characters]…tail``: messages stay one readable
    line while still showing where the input starts and ends."""
    if len(text) <= limit:
        return text
    keep = limit // 2 - 20

    def cut(m: re.Match) -> str:
        s = m.group()
        return f"{s[:keep]}…[{len(s):,} characters]…{s[-keep:]}"

    text = re.sub(r"\S{" + str(limit + 1) + ",}", cut, text)
    if len(text) > 8 * limit:  # many short pieces (a pasted file with spaces)
        text = f"{text[: 4 * limit]}…[{len(text) - 6 * limit:,} characters]…{text[-2 * limit :]}"
    return text


def cause(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for a one-line report."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def check_count(name: str, value, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int if it is an integer in [low, high], else a one-line ConfigError
    (``sample(2.5)``, ``steps=-1``, ``True``): sizes and counts given to the Python API are
    checked as the command line's flags are."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ConfigError(f"{name} must be {what}, got {value!r}") from None
    if number < low:
        raise ConfigError(f"{name} must be {what}, got {number}")
    if high is not None and number > high:
        raise ConfigError(f"{name} must be at most {high}, got {number}")
    return number


def check_seed(seed) -> int:
    """A seed as the command line takes it: an integer in [0, SEED_MAX]."""
    return check_count("seed", seed, low=0, high=SEED_MAX)
