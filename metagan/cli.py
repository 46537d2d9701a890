"""The ``metagan`` command line.

Every user mistake raises :class:`~metagan.errors.MetaganError`; :func:`main` prints it as one
line ``metagan: error: ...`` and returns 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import torch

from metagan import checkpoint, config, distributed, memory, ops, plugins
from metagan._version import __version__
from metagan.algorithm import ITERATIONS_MAX
from metagan.errors import SEED_MAX, ConfigError, DataError, MetaganError, shorten
from metagan.io import check_writable


def _positive(kind: str, high: int = 10**6, low: int = 1):
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


_seed = _positive("--seed", SEED_MAX, low=0)


def _ratio(text: str) -> float:
    from metagan.fewshot import check_mix

    try:
        return check_mix(float(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"a mix ratio must be a number in [0, 1), got {text!r}"
        ) from None


def _checkpoint(text: str) -> Path:
    """A checkpoint file, or the name of a checkpoint shipped with metagan (metagan.pretrained)."""
    from metagan import pretrained

    try:
        return pretrained.resolve(text)
    except MetaganError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention too)
        self.exit(2, f"{self.prog}: error: {shorten(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="metagan", description="Meta-learn GANs that adapt to a new class from a few images."
    )
    p.add_argument("--version", action="version", version=f"metagan {__version__}")
    p.add_argument(
        "--disable-plugin", action="append", default=[], metavar="NAME",
        help=f"do not load plugin NAME (repeatable; also ${plugins.DISABLE_ENV}=A,B)",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sp = sub.add_parser("plugins", help="list plugins and everything they registered")
    sp.set_defaults(func=cmd_plugins)

    t = sub.add_parser("train", help="meta-train a generator/discriminator pair")
    t.add_argument("--config", type=Path, help="TOML config file")
    t.add_argument("--algorithm", help="meta-algorithm (meta.algorithm)")
    t.add_argument("--dataset", help="dataset (data.dataset)")
    t.add_argument("--arch", help="architecture (model.arch)")
    t.add_argument("--data-root", help="dataset path (data.root)")
    t.add_argument("--out", help="output folder (run.out)")
    t.add_argument(
        "--seed", type=_seed, help="seed for tasks, noise and the initialisation (run.seed)"
    )
    t.add_argument(
        "--iterations",
        type=_positive("--iterations", ITERATIONS_MAX),
        help="meta-iterations (meta.iterations)",
    )
    t.add_argument("--device", help="cpu, cuda or cuda:N (run.device)")
    t.add_argument(
        "--resume",
        type=_checkpoint,
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

    a = sub.add_parser("adapt", help="adapt a checkpoint to K images and sample")
    a.add_argument("--checkpoint", type=_checkpoint, required=True)
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, help="folder with your K images of one class")
    src.add_argument(
        "--class",
        dest="class_name",
        help="a class of the checkpoint's dataset, named GROUP/CLASS: e.g. "
        "alphabet01/character01 (glyphs) or Greek/character03 (omniglot)",
    )
    src.add_argument(
        "--unseen",
        type=_positive("--unseen"),
        metavar="N",
        help="the first N meta-test classes of the checkpoint's dataset, adapted at once",
    )
    a.add_argument(
        "--shots",
        type=_positive("--shots"),
        default=None,
        help="K images to adapt on (default: the checkpoint's)",
    )
    a.add_argument(
        "--steps",
        type=_positive("--steps", 10_000),
        default=None,
        help="inner steps (default: the checkpoint's)",
    )
    a.add_argument("--num", type=_positive("--num"), default=16, help="samples to write")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--seed", type=_seed, default=0)
    a.add_argument(
        "overrides",
        nargs="*",
        metavar="inner.key=value",
        help="adapt differently than trained, e.g. inner.lr_g=0.01",
    )
    a.set_defaults(func=cmd_adapt)

    s = sub.add_parser("sample", help="sample the meta-learned (unadapted) generator")
    s.add_argument("--checkpoint", type=_checkpoint, required=True)
    s.add_argument(
        "--images", type=Path,
        help="folder with images of one class to condition on (conditional architectures only; all are used)",
    )  # fmt: skip
    s.add_argument("--num", type=_positive("--num"), default=16)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(func=cmd_sample)

    _add_bench_parser(sub)
    _add_eval_parser(sub)

    d = sub.add_parser("data", help="dataset utilities")
    dsub = d.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    dl = dsub.add_parser("download", help="download a dataset's official files, checksum-verified")
    dl.add_argument("name", help="a dataset that can fetch its files, e.g. omniglot")
    dl.add_argument("--root", type=Path, required=True, help="folder to put the files in")
    dl.add_argument(
        "--splits", nargs="+", default=None, metavar="PART",
        help="which of the dataset's files (omniglot: images_background images_evaluation "
        "images_background_small1 images_background_small2; default: the dataset's choice)",
    )  # fmt: skip
    dl.set_defaults(func=cmd_download)
    return p


def _positive_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x]
    except ValueError:
        vals = []
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of positive integers, got {text!r}"
        )
    return vals


def _add_bench_parser(sub) -> None:
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
    b.add_argument(
        "--tasks",
        type=_positive_list,
        default=[1, 4, 8],
        help="comma-separated T values, e.g. 1,4,8,32,128",
    )
    b.add_argument("--shots", type=_positive("--shots"), default=5)
    b.add_argument("--queries", type=_positive("--queries"), default=5)
    b.add_argument("--inner-steps", type=_positive("--inner-steps"), default=5)
    b.add_argument("--z-dim", type=_positive("--z-dim"), default=64)
    b.add_argument("--width", type=_positive("--width"), default=32)
    b.add_argument("--device", default="cpu")
    b.add_argument(
        "--modes",
        type=lambda s: s.split(","),
        default=None,
        help="comma-separated, from sequential,batched,batched-ext,batched-graph "
        "(default: those the device supports)",
    )
    b.add_argument("--repeats", type=_positive("--repeats"), default=5)
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


def _add_eval_parser(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="score generators on unseen classes against the `shots` and `affine` baselines",
        description="Adapt every generator to K shots of each meta-test class, score its "
        "samples against the class's other images, and run the four-arm augmentation protocol. "
        "Writes results.json, table.md and curves.png to --out.",
    )
    e.add_argument("--features", type=Path, help="extractor from `metagan eval fit-features`")
    e.add_argument(
        "--generator", action="append", default=[], metavar="[NAME=]CHECKPOINT",
        help="a checkpoint to evaluate (repeatable); NAME defaults to its algorithm",
    )  # fmt: skip
    e.add_argument(
        "--reference", nargs="*", default=["shots", "affine", "elastic", "stroke",
        "affine+elastic+stroke"], metavar="ROW",
        help="rows that need no GAN: shots, and free rows affine, elastic, stroke or a "
        "'+'-joined composition (default: shots affine elastic stroke affine+elastic+stroke)",
    )  # fmt: skip
    e.add_argument(
        "--strength", action="append", default=[], metavar="PART=S[,S...]",
        help="candidate strengths of a free part, chosen on validation classes (defaults: "
        "affine=0.5,1,1.5 elastic=1,2,3 stroke=0.5,1; units in docs/results.md)",
    )  # fmt: skip
    e.add_argument(
        "--shots", type=_positive("--shots"), nargs="+", default=[1, 5], metavar="K",
        help="shots per class to adapt on, one table per K (default: 1 5)",
    )  # fmt: skip
    e.add_argument(
        "--steps", type=_positive("--steps", 10_000, low=0),
        help="adaptation steps S (default: the checkpoints')",
    )  # fmt: skip
    e.add_argument(
        "--curve-steps", type=_positive("--curve-steps", 10_000, low=0), metavar="N",
        help="continue the adaptation curves to step N (sparsely after S: 7, 10, 15, 20, ...); "
        "the table and the augmentation protocol stay at step S",
    )  # fmt: skip
    e.add_argument("--num", type=_positive("--num"), default=32, help="samples per class")
    e.add_argument(
        "--augment-k", type=_positive("--augment-k"), nargs="*", default=[1, 5], metavar="k",
        help="real images per class in the augmentation protocol (none: skip it)",
    )  # fmt: skip
    e.add_argument(
        "--augment-num", type=_positive("--augment-num"), default=64,
        help="generated images per class in the augmentation protocol",
    )  # fmt: skip
    e.add_argument(
        "--mix", type=_ratio, nargs="+", default=[0.1, 0.25, 0.5], metavar="R",
        help="candidate mix ratios of the augmentation arms (share of each classifier batch "
        "drawn from generated images, in [0, 1)); one is chosen on validation classes from the "
        "meta-train side and applied to every row (default: 0.1 0.25 0.5)",
    )  # fmt: skip
    e.add_argument(
        "--augment-steps", type=_positive("--augment-steps"), nargs="+", default=[200, 400],
        metavar="N", help="candidate training steps of the augmentation arms' classifiers, "
        "chosen the same way (default: 200 400)",
    )  # fmt: skip
    e.add_argument(
        "--val-classes", type=_positive("--val-classes"), default=20, metavar="N",
        help="meta-train classes those choices are made on (default: 20)",
    )  # fmt: skip
    e.add_argument(
        "--classifier-steps", type=_positive("--classifier-steps"), default=400,
        help="training steps of the class-fidelity judge",
    )  # fmt: skip
    e.add_argument(
        "--bootstrap", type=_positive("--bootstrap"), default=100,
        help="class resamples for FID's confidence interval (default: 100)",
    )  # fmt: skip
    e.add_argument(
        "--classes", type=_positive("--classes"), default=0, metavar="N",
        help="evaluate a seeded random subset of N meta-test classes (default: all)",
    )  # fmt: skip
    e.add_argument("--seed", type=_seed, default=0)
    e.add_argument("--device", default="cpu", help="where generators adapt (cpu, cuda)")
    e.add_argument("--out", type=Path, help="folder for results.json, table.md, curves.png")
    e.set_defaults(func=cmd_eval)
    esub = e.add_subparsers(dest="eval_command", required=False, parser_class=_Parser)
    f = esub.add_parser(
        "fit-features",
        help="train the domain feature extractor on the meta-train classes",
        description="Train a small CNN classifier on the meta-train classes of a data config "
        "(from --checkpoint, --config or --dataset) and save it with its held-out accuracy.",
    )
    f.add_argument(
        "--checkpoint", type=_checkpoint, help="take the data config from this checkpoint"
    )
    f.add_argument("--config", type=Path, help="take the data config from this TOML file")
    f.add_argument("--dataset", help="dataset (data.dataset)")
    f.add_argument("--data-root", help="dataset path (data.root)")
    f.add_argument("--out", type=Path, required=True, help="where to write the extractor (.pt)")
    f.add_argument("--steps", type=_positive("--steps"), default=1500, help="training steps")
    f.add_argument("--seed", type=_seed, default=0)
    f.add_argument(
        "overrides", nargs="*", metavar="data.key=value", help='e.g. data.test_groups=["Latin"]'
    )
    f.set_defaults(func=cmd_fit_features)


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


# -- commands ----------------------------------------------------------------------------------
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


def resolve_config(args) -> config.Config:
    overrides = list(args.overrides)
    for flag, key in (
        ("algorithm", "meta.algorithm"), ("dataset", "data.dataset"), ("arch", "model.arch"),
        ("data_root", "data.root"), ("out", "run.out"), ("seed", "run.seed"),
        ("iterations", "meta.iterations"), ("device", "run.device"),
    ):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={_toml(value)}")
    # Resuming starts from the checkpoint's own config; a changed architecture is refused when
    # the parameters are loaded (checkpoint.check_params).
    base = checkpoint.load(args.resume)["config"] if args.resume is not None else None
    return config.load(args.config, overrides, base=base)


def cmd_train(args, regs) -> int:
    from metagan.session import Session
    from metagan.train import Trainer

    cfg = resolve_config(args)
    if args.print_config:
        print(cfg.to_toml(), end="")
        return 0
    check_writable(cfg.run.out, "run.out (--out)")
    ctx = distributed.setup(cfg)  # under torchrun: join the group, build on this rank's GPU
    session = Session(ctx.rank_config(cfg), regs)
    trainer = Trainer(cfg, session, resume=args.resume, dist=ctx, overwrite=args.overwrite)
    res = trainer.run(log=_log)
    if ctx.is_main:
        if res.checkpoint is not None and res.checkpoint.is_file():
            print(f"checkpoint: {res.checkpoint}")
        else:
            print("no checkpoint was written")
        if res.grid:
            print(f"samples: {res.grid}")
        if trainer.s.algorithm.trains:
            print(res.summary())
    return 0


def cmd_adapt(args, regs) -> int:
    from metagan.adaptation import adapt_and_sample, load_session, read_shots
    from metagan.data.images import save_grid
    from metagan.io import atomic_write

    check_writable(args.out, "--out")
    s, params = load_session(args.checkpoint, regs, overrides=args.overrides, num=args.num)
    K = args.shots or s.cfg.data.shots
    steps = args.steps or s.cfg.inner.steps
    size, invert = s.cfg.data.image_size, s.cfg.data.invert
    if args.images is not None:
        shots = read_shots(args.images, K, size, invert)  # (1, K, C, H, W)
        names = [args.images.name]
    else:
        if args.class_name is not None:
            classes = [s.dataset.class_index(args.class_name)]
        else:
            if not s.split[1]:
                raise ConfigError(
                    f"{args.checkpoint} was trained on every class of its dataset "
                    "(data.test_fraction = 0): it has no unseen classes; adapt it to your own "
                    "drawings with --images DIR, or to one class with --class NAME"
                )
            classes = s.split[1][: args.unseen]
        gen = torch.Generator().manual_seed(args.seed)
        rows = []
        for idx in classes:
            imgs = s.cache.get(idx)
            if imgs.shape[0] < K:
                raise DataError(
                    f"class {s.dataset.classes[idx].name!r} has {imgs.shape[0]} images, fewer than --shots {K}"
                )
            rows.append(imgs[torch.randperm(imgs.shape[0], generator=gen)[:K]])
        shots = torch.stack(rows)  # (T, K, C, H, W)
        names = [s.dataset.classes[i].name for i in classes]
    memory.check_sampling(s.footprint, shots.shape[0], args.num, s.cfg, s.device)
    samples = adapt_and_sample(s, params, shots.to(s.device), args.num, seed=args.seed, steps=steps)
    for name, gen_imgs in zip(names, samples):
        _write_samples(args.out if len(names) == 1 else args.out / _slug(name), gen_imgs, invert)
    grid = args.out / "grid.png"
    rows = [torch.cat([k, g]) for k, g in zip(shots.cpu(), samples)]
    save_grid(rows, grid, invert=invert, split=K, labels=names)
    with atomic_write(args.out / "adapt.txt", "w") as f:
        f.write(
            f"checkpoint = {args.checkpoint}\nclasses = {names}\nshots = {K}\nsteps = {steps}\nseed = {args.seed}\n"
        )
    print(
        f"adapted to {len(names)} class(es) on {K} shots for {steps} steps; wrote {args.num} samples each to {args.out}"
    )
    print(f"grid (each row: its class, {K} shots | {args.num} samples): {grid}")
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def cmd_sample(args, regs) -> int:
    from metagan.adaptation import load_session, read_shots
    from metagan.data.images import save_grid

    check_writable(args.out, "--out")
    s, params = load_session(args.checkpoint, regs, num=args.num)
    arch, invert = s.cfg.model.arch, s.cfg.data.invert
    if s.engine.conditional and args.images is None:
        raise ConfigError(
            f"architecture {arch!r} is conditioned on shots; give --images DIR with images of one class"
        )
    if not s.engine.conditional and args.images is not None:
        raise ConfigError(f"architecture {arch!r} is not conditional; drop --images")
    shots = None
    if args.images is not None:  # every image of the folder: (1, K, C, H, W)
        shots = read_shots(args.images, 1, s.cfg.data.image_size, invert, all_images=True)
        shots = shots.to(s.device)
    gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(1, args.num, s.cfg.model.z_dim, generator=gen).to(s.device)
    with torch.no_grad():
        samples = s.engine.generate(params["g"].detach()[None], z, shots)[0].cpu()
    _write_samples(args.out, samples, invert)
    row = samples if shots is None else torch.cat([shots[0].cpu(), samples])
    split = 0 if shots is None else shots.shape[1]  # a line between the shots and the samples
    save_grid([row], args.out / "grid.png", invert=invert, split=split)
    print(
        f"wrote {args.num} samples of the meta-learned generator to {args.out}; grid: {args.out / 'grid.png'}"
    )
    return 0


def cmd_bench(args, regs) -> int:
    from metagan import bench

    return bench.run(args, regs)


def cmd_fit_features(args, regs) -> int:
    from metagan.eval import features
    from metagan.eval.classifier import FitConfig
    from metagan.session import Session

    bad = [o for o in args.overrides if not o.startswith("data.")]
    if bad:
        raise ConfigError(f"fit-features takes only data.* overrides, got {bad[0]!r}")
    if args.checkpoint is not None and args.config is not None:
        raise ConfigError("give --checkpoint or --config, not both")
    overrides = list(args.overrides)
    for flag, key in (("dataset", "data.dataset"), ("data_root", "data.root")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={_toml(getattr(args, flag))}")
    check_writable(args.out, "--out", folder=False)
    base = checkpoint.load(args.checkpoint)["config"] if args.checkpoint is not None else None
    cfg = config.load(args.config, overrides, base=base)
    fit_cfg = FitConfig(steps=args.steps, seed=args.seed)
    feats = features.fit_features(Session(cfg, regs, check_memory=False), fit_cfg, log=_log)
    features.save(feats, args.out, fit_cfg)
    print(
        f"feature extractor: {args.out} ({len(feats.train_classes)} meta-train classes; "
        f"held-out accuracy {feats.accuracy:.3f}; {len(feats.test_classes)} meta-test classes unseen)"
    )
    return 0


def cmd_eval(args, regs) -> int:
    from metagan import pretrained
    from metagan.eval import features, free, report
    from metagan.eval.classifier import FitConfig
    from metagan.eval.run import EvalConfig, evaluate
    from metagan.eval.sources import CheckpointSource, FreeSource, ShotsSource

    for flag in ("features", "out"):
        if getattr(args, flag) is None:
            raise ConfigError(f"eval needs --{flag} (see metagan eval --help)")
    check_writable(args.out, "--out")
    feats = features.load(args.features)
    cfg = EvalConfig(
        shots=tuple(args.shots), steps=args.steps, curve_steps=args.curve_steps, num=args.num,
        augment_k=tuple(args.augment_k),
        augment_num=args.augment_num, classifier=FitConfig(steps=args.classifier_steps),
        augment_mix=tuple(args.mix), augment_steps=tuple(args.augment_steps),
        val_classes=args.val_classes, bootstrap=args.bootstrap, classes=args.classes,
        seed=args.seed, strengths=free.CANDIDATES | free.parse_strengths(args.strength),
    )  # fmt: skip
    bg = free.background_of(feats.data["invert"])
    sources = [ShotsSource() if ref == "shots" else FreeSource(ref, bg)
               for ref in dict.fromkeys(args.reference)]  # fmt: skip
    for item in args.generator:
        name, sep, path = item.rpartition("=")
        sources.append(
            CheckpointSource(
                pretrained.resolve(path), regs, name=name if sep else None, device=args.device
            )
        )
    if not sources:
        raise ConfigError("nothing to evaluate: give --generator CHECKPOINT or --reference rows")
    res = evaluate(feats, sources, cfg, regs, log=_log)
    written = report.write(res, args.out)
    for p in written:
        print(p)
    if not any(p.suffix == ".png" for p in written):
        print("curves.png not written: matplotlib is not installed (pip install 'metagan[eval]')")
    return 0


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


# -- helpers -----------------------------------------------------------------------------------
def _write_samples(out: Path, samples: torch.Tensor, invert: bool) -> None:
    from metagan.data.images import to_pil
    from metagan.io import atomic_write

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    for i, img in enumerate(to_pil(samples, invert=invert)):
        with atomic_write(out / f"sample_{i:03d}.png") as f:
            img.save(f, format="PNG")


def _toml(value) -> str:
    if isinstance(value, (int, float)):
        return str(value)
    return config._toml_value(str(value))


def _log(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)
