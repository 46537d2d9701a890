"""``metagan train``: a config (file, flags, overrides) to a run of the Trainer."""

from __future__ import annotations

from pathlib import Path

from metagan import api, config
from metagan.algorithm import ITERATIONS_MAX
from metagan.cli._args import checkpoint_arg, log, positive, seed_arg, toml_value


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="meta-train a generator/discriminator pair")
    t.add_argument("--config", type=Path, help="TOML config file")
    t.add_argument("--algorithm", help="meta-algorithm (meta.algorithm)")
    t.add_argument("--dataset", help="dataset (data.dataset)")
    t.add_argument("--arch", help="architecture (model.arch)")
    t.add_argument("--data-root", help="dataset path (data.root)")
    t.add_argument("--out", help="output folder (run.out)")
    t.add_argument(
        "--seed", type=seed_arg, help="seed for tasks, noise and the initialisation (run.seed)"
    )
    t.add_argument(
        "--iterations",
        type=positive("--iterations", ITERATIONS_MAX),
        help="meta-iterations (meta.iterations)",
    )
    t.add_argument("--device", help="cpu, cuda or cuda:N (run.device)")
    t.add_argument(
        "--resume",
        type=checkpoint_arg,
        metavar="CHECKPOINT",
        help="continue a run from its checkpoint (into its own folder, or a new --out)",
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run that --out already holds (its checkpoint, config, metrics and "
        "sample grids are removed when this run starts); never one that is still running",
    )
    t.add_argument(
        "--print-config", action="store_true", help="print the resolved config as TOML and exit"
    )
    t.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides, e.g. inner.steps=3",
    )
    t.set_defaults(func=cmd_train)


def resolve_config(args) -> config.Config:
    """The run's config: the flags as ``section.key=value`` overrides, through the API's
    :func:`metagan.api.resolve_config` (resuming starts from the checkpoint's own config)."""
    overrides = list(args.overrides)
    for flag, key in (
        ("algorithm", "meta.algorithm"), ("dataset", "data.dataset"), ("arch", "model.arch"),
        ("data_root", "data.root"), ("out", "run.out"), ("seed", "run.seed"),
        ("iterations", "meta.iterations"), ("device", "run.device"),
    ):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={toml_value(value)}")
    return api.resolve_config(args.config, overrides, resume=args.resume)


def cmd_train(args, regs) -> int:
    """``metagan train``: the API's :func:`~metagan.api.make_trainer`, run with a log."""
    cfg = resolve_config(args)
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    trainer = api.make_trainer(cfg, resume=args.resume, overwrite=args.overwrite, registries=regs)
    res = trainer.run(log=log)
    if trainer.is_main:
        if res.checkpoint is not None and res.checkpoint.is_file():
            print(f"checkpoint: {res.checkpoint}")
        else:
            print("no checkpoint was written")
        if res.grid:
            print(f"samples: {res.grid}")
        if trainer.s.algorithm.trains:
            print(res.summary())
    return 0
