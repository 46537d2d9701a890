"""What every subcommand shares: argparse types that refuse bad values in one line, the
parser class, and small output helpers."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from metagan import config
from metagan.errors import SEED_MAX, ConfigError, MetaganError, shorten


def positive(kind: str, high: int = 10**6, low: int = 1):
    """An argparse type: an integer in [low, high] (absurd sizes are refused in one line)."""

    def parse(text: str) -> int:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{kind} must be {what}, got {value}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{kind} must be at most {high}, got {value}")
        return value

    return parse


seed_arg = positive("--seed", SEED_MAX, low=0)


def ratio(text: str) -> float:
    from metagan.fewshot import check_mix

    try:
        return check_mix(float(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"a mix ratio must be a number in [0, 1), got {text!r}"
        ) from None


def checkpoint_arg(text: str) -> Path:
    """A checkpoint file, or the name of a checkpoint shipped with metagan (metagan.pretrained)."""
    from metagan import pretrained

    try:
        return pretrained.resolve(text)
    except MetaganError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention too)
        self.exit(2, f"{self.prog}: error: {shorten(message)} (see {self.prog} --help)\n")


def positive_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x]
    except ValueError:
        vals = []
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of positive integers, got {text!r}"
        )
    return vals


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def write_samples(out: Path, samples: torch.Tensor, invert: bool) -> None:
    from metagan.data.images import to_pil
    from metagan.io import atomic_write

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    for i, img in enumerate(to_pil(samples, invert=invert)):
        with atomic_write(out / f"sample_{i:03d}.png") as f:
            img.save(f, format="PNG")


def toml_value(value) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    return config._toml_value(str(value))


def log(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)
