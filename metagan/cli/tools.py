"""``metagan plugins``, ``metagan bench`` and ``metagan data download``."""

from __future__ import annotations

from pathlib import Path

import torch

from metagan import ops, plugins
from metagan._version import __version__
from metagan.cli._args import Parser, positive, positive_list
from metagan.errors import ConfigError
from metagan.io import check_writable


def add_plugins_parser(sub) -> None:
    sp = sub.add_parser("plugins", help="list plugins and everything they registered")
    sp.set_defaults(func=cmd_plugins)


def add_bench_parser(sub) -> None:
    b = sub.add_parser(
        "bench", help="time meta-iterations: batched vs the sequential per-task loop"
    )
    b.add_argument(
        "--algorithm",
        type=lambda s: s.split(","),
        default=["fomaml", "maml"],
        help="comma-separated",
    )
    b.add_argument("--arch", default="dcgan")
    b.add_argument("--image-size", type=int, default=28)
    b.add_argument("--channels", type=int, default=1, choices=[1, 3], help="3: colour images")
    b.add_argument(
        "--tasks",
        type=positive_list,
        default=[1, 4, 8],
        help="comma-separated T values, e.g. 1,4,8,32,128",
    )
    b.add_argument("--shots", type=positive("--shots"), default=5)
    b.add_argument("--queries", type=positive("--queries"), default=5)
    b.add_argument("--inner-steps", type=positive("--inner-steps"), default=5)
    b.add_argument("--z-dim", type=positive("--z-dim"), default=64)
    b.add_argument("--width", type=positive("--width"), default=32)
    b.add_argument("--device", default="cpu")
    b.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated, from sequential,batched,batched-ext,batched-graph "
        "(default: those the device supports)",
    )
    b.add_argument("--repeats", type=positive("--repeats"), default=5)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    b.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    b.add_argument(
        "--recompute",
        action="store_true",
        help="second-order algorithms recompute each inner step in the backward (inner.recompute)",
    )
    b.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="JSON lines to PATH, or to stdout",
    )
    b.set_defaults(func=cmd_bench)


def add_data_parser(sub) -> None:
    d = sub.add_parser("data", help="dataset utilities")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    dl = dsub.add_parser("download", help="download a dataset's official files, checksum-verified")
    dl.add_argument("name", help="a dataset that can fetch its files, e.g. omniglot")
    dl.add_argument("--root", type=Path, required=True, help="folder to put the files in")
    dl.add_argument(
        "--splits", nargs="+", default=None, metavar="PART",
        help="which of the dataset's files (omniglot: images_background images_evaluation "
        "images_background_small1 images_background_small2; default: the dataset's choice)",
    )  # fmt: skip
    dl.set_defaults(func=cmd_download)


def cmd_plugins(args, regs: plugins.Registries) -> int:
    print(f"metagan {__version__}; torch {torch.__version__}; ops backend: {ops.backend_info()}")
    print("plugins:")
    for p in regs.plugins:
        status = (
            f"FAILED: {p.error}"
            if p.error
            else ", ".join(h.removeprefix("metagan_") for h in p.hooks)
        )
        print(f"  {p.name:<16} {p.origin:<28} {status}")
    if regs.disabled:
        print(f"  disabled: {', '.join(regs.disabled)}")
    for reg in regs.kinds():
        print(f"{'losses' if reg.kind == 'loss' else reg.kind + 's'}:")
        clashes = set(reg.clashes())
        for e in reg.entries():
            ver = f"{e.dist}=={e.version}" if e.dist else "not from a distribution"
            name = f"{e.plugin}:{e.name}" if e.name in clashes else e.name
            print(f"  {name:<16} {e.plugin + ' (' + ver + ')':<40} {e.description}")
        for name in sorted(clashes):
            print(f"  ! {name!r} is registered by several plugins: use plugin:{name}")
    return 0


def cmd_bench(args, regs) -> int:
    from metagan import bench

    return bench.run(args, regs)


def cmd_download(args, regs) -> int:
    from metagan.data.base import ClassDataset

    cls = regs.datasets.get(args.name)
    if cls.download.__func__ is ClassDataset.download.__func__:
        can = [
            n
            for n in regs.datasets.names()
            if n not in regs.datasets.clashes()
            and regs.datasets.get(n).download.__func__ is not ClassDataset.download.__func__
        ]
        raise ConfigError(
            f"dataset {args.name!r} has nothing to download; datasets that do: "
            f"{', '.join(can) or 'none installed'}"
        )
    check_writable(args.root, "--root")
    for p in cls.download(args.root, parts=args.splits):
        print(p)
    return 0
