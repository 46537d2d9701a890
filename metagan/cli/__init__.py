"""The ``metagan`` command line: one module per subcommand, each a thin layer over the
library (``train``: :mod:`metagan.cli.train`; ``adapt``, ``sample``: :mod:`.generate`;
``eval``: :mod:`.evaluate`; ``plugins``, ``bench``, ``data``: :mod:`.tools`).

Every user mistake raises :class:`~metagan.errors.MetaganError`; :func:`main` prints it as one
line ``metagan: error: ...`` and returns 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch

from metagan import distributed, plugins
from metagan._version import __version__
from metagan.cli import evaluate, generate, tools, train
from metagan.cli._args import Parser
from metagan.errors import MetaganError, shorten


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="metagan", description="Meta-learn GANs that adapt to a new class from a few images."
    )
    p.add_argument("--version", action="version", version=f"metagan {__version__}")
    p.add_argument(
        "--disable-plugin", action="append", default=[], metavar="NAME",
        help=f"do not load plugin NAME (repeatable; also ${plugins.DISABLE_ENV}=A,B)",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    tools.add_plugins_parser(sub)
    train.add_parser(sub)
    generate.add_parsers(sub)
    tools.add_bench_parser(sub)
    evaluate.add_parser(sub)
    tools.add_data_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    for arg in argv:  # undecodable bytes in an argument arrive as lone surrogates
        if _SURROGATE.search(arg):
            _error(f"argument {_printable(arg)!r} is not valid UTF-8; rename the file or folder")
            return 2
    try:
        args, extra = parser.parse_known_args(argv)
        # `key=value` overrides may come before or after the options
        if (
            extra
            and (args.command in ("train", "adapt") or getattr(args, "eval_command", None))
            and all("=" in e and not e.startswith("-") for e in extra)
        ):
            args.overrides += extra
        elif extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse has printed its one-line message
        return int(exc.code or 0)
    try:
        regs = plugins.get(args.disable_plugin)
        for line in plugins.failure_lines(regs):
            print(f"metagan: {line}", file=sys.stderr)
        return args.func(args, regs) or 0
    except MetaganError as exc:
        _error(str(exc), every_rank=getattr(exc, "rank_specific", False))
        return exc.exit_code
    except OSError as exc:  # a path the checks could not foresee (a full disk, a race)
        where = f"{exc.filename}: " if exc.filename else ""
        _error(f"{where}{exc.strerror or exc}")
        return 2
    except (MemoryError, torch.OutOfMemoryError) as exc:
        _error(f"out of memory ({_first_line(exc)}); {_MEMORY_HINT}")
        return 2
    except RuntimeError as exc:
        if distributed.lost_peer(exc):
            _error(distributed.lost_peer(exc), every_rank=True)
            return 2
        if "can't allocate memory" not in str(exc) and "out of memory" not in str(exc):
            raise
        _error(f"out of memory ({_first_line(exc)}); {_MEMORY_HINT}")
        return 2
    except KeyboardInterrupt:
        print("metagan: interrupted", file=sys.stderr)
        return 130


_SURROGATE = re.compile("[\udc80-\udcff]")
_MEMORY_HINT = "lower model.width, model.z_dim, meta.tasks, inner.fake_batch or --num"


def _error(message: str, *, every_rank: bool = False) -> None:
    """``metagan: error: <message>`` on stderr, one line, once per run: under torchrun only rank
    0 prints (every rank meets the same bad input; one message, not one per process), unless
    the error is ``every_rank``'s own (then each rank that meets it prints it)."""
    if not every_rank and os.environ.get("RANK", "0") not in ("", "0"):
        return
    line = shorten(" ".join(_printable(message).split("\n")))
    print(f"metagan: error: {line}", file=sys.stderr)


def _printable(text: str) -> str:
    """``text`` with undecodable bytes shown as escapes (printing them would raise)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
