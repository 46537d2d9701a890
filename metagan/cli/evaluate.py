"""``metagan eval`` and ``metagan eval fit-features``: scoring generators on unseen classes."""

from __future__ import annotations

from pathlib import Path

from metagan import checkpoint, config
from metagan.cli._args import (
    Parser,
    checkpoint_arg,
    log,
    positive,
    ratio,
    seed_arg,
    toml_value,
)
from metagan.errors import ConfigError
from metagan.io import check_writable


def add_parser(sub) -> None:
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
        "--reference", nargs="*", default=None, metavar="ROW",
        help="rows that need no GAN: shots, and free rows affine, elastic, stroke or a "
        "'+'-joined composition, and for colour photographs flip, crop, colour, photo "
        "(default: shots affine elastic stroke affine+elastic+stroke; for colour data "
        "shots affine elastic flip crop colour photo)",
    )  # fmt: skip
    e.add_argument(
        "--strength", action="append", default=[], metavar="PART=S[,S...]",
        help="candidate strengths of a free part, chosen on validation classes (defaults: "
        "affine=0.5,1,1.5 elastic=1,2,3 stroke=0.5,1; units in docs/results.md)",
    )  # fmt: skip
    e.add_argument(
        "--shots", type=positive("--shots"), nargs="+", default=[1, 5], metavar="K",
        help="shots per class to adapt on, one table per K (default: 1 5)",
    )  # fmt: skip
    e.add_argument(
        "--steps", type=positive("--steps", 10_000, low=0),
        help="adaptation steps S (default: the checkpoints')",
    )  # fmt: skip
    e.add_argument(
        "--curve-steps", type=positive("--curve-steps", 10_000, low=0), metavar="N",
        help="continue the adaptation curves to step N (sparsely after S: 7, 10, 15, 20, ...); "
        "the table and the augmentation protocol stay at step S",
    )  # fmt: skip
    e.add_argument("--num", type=positive("--num"), default=32, help="samples per class")
    e.add_argument(
        "--augment-k", type=positive("--augment-k"), nargs="*", default=[1, 5], metavar="k",
        help="real images per class in the augmentation protocol (none: skip it)",
    )  # fmt: skip
    e.add_argument(
        "--augment-num", type=positive("--augment-num"), default=64,
        help="generated images per class in the augmentation protocol",
    )  # fmt: skip
    e.add_argument(
        "--mix", type=ratio, nargs="+", default=[0.1, 0.25, 0.5], metavar="R",
        help="candidate mix ratios of the augmentation arms (share of each classifier batch "
        "drawn from generated images, in [0, 1)); one is chosen on validation classes from the "
        "meta-train side and applied to every row (default: 0.1 0.25 0.5)",
    )  # fmt: skip
    e.add_argument(
        "--augment-steps", type=positive("--augment-steps"), nargs="+", default=[200, 400],
        metavar="N", help="candidate training steps of the augmentation arms' classifiers, "
        "chosen the same way (default: 200 400)",
    )  # fmt: skip
    e.add_argument(
        "--val-classes", type=positive("--val-classes"), default=20, metavar="N",
        help="meta-train classes those choices are made on (default: 20)",
    )  # fmt: skip
    e.add_argument(
        "--classifier-steps", type=positive("--classifier-steps"), default=400,
        help="training steps of the class-fidelity judge",
    )  # fmt: skip
    e.add_argument(
        "--bootstrap", type=positive("--bootstrap"), default=100,
        help="class resamples for FID's confidence interval (default: 100)",
    )  # fmt: skip
    e.add_argument(
        "--classes", type=positive("--classes"), default=0, metavar="N",
        help="evaluate a seeded random subset of N meta-test classes (default: all)",
    )  # fmt: skip
    e.add_argument("--seed", type=seed_arg, default=0)
    e.add_argument("--device", default="cpu", help="where generators adapt (cpu, cuda)")
    e.add_argument("--out", type=Path, help="folder for results.json, table.md, curves.png")
    e.set_defaults(func=cmd_eval)
    esub = e.add_subparsers(dest="eval_command", required=False, parser_class=Parser)
    f = esub.add_parser(
        "fit-features",
        help="train the domain feature extractor on the meta-train classes",
        description="Train a small CNN classifier on the meta-train classes of a data config "
        "(from --checkpoint, --config or --dataset) and save it with its held-out accuracy.",
    )
    f.add_argument(
        "--checkpoint", type=checkpoint_arg, help="take the data config from this checkpoint"
    )
    f.add_argument("--config", type=Path, help="take the data config from this TOML file")
    f.add_argument("--dataset", help="dataset (data.dataset)")
    f.add_argument("--data-root", help="dataset path (data.root)")
    f.add_argument("--out", type=Path, required=True, help="where to write the extractor (.pt)")
    f.add_argument("--steps", type=positive("--steps"), default=1500, help="training steps")
    f.add_argument("--seed", type=seed_arg, default=0)
    f.add_argument(
        "overrides", nargs="*", metavar="data.key=value", help='e.g. data.test_groups=["Latin"]'
    )
    f.set_defaults(func=cmd_fit_features)


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
            overrides.append(f"{key}={toml_value(getattr(args, flag))}")
    check_writable(args.out, "--out", folder=False)
    base = checkpoint.load(args.checkpoint)["config"] if args.checkpoint is not None else None
    cfg = config.load(args.config, overrides, base=base)
    fit_cfg = FitConfig(steps=args.steps, seed=args.seed)
    feats = features.fit_features(Session(cfg, regs, check_memory=False), fit_cfg, log=log)
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
    from metagan.eval.data import EvalConfig
    from metagan.eval.photo import PHOTO_REFERENCES, PhotoSource
    from metagan.eval.run import evaluate
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
    bg = free.background_of_data(feats.data)
    refs = args.reference
    if refs is None:
        refs = ["shots", *(("affine", "elastic", *PHOTO_REFERENCES) if bg is None else free.ROWS)]
    sources = [ShotsSource() if ref == "shots" else PhotoSource(ref) if ref in PHOTO_REFERENCES
               else FreeSource(ref, bg) for ref in dict.fromkeys(refs)]  # fmt: skip
    for item in args.generator:
        name, sep, path = item.rpartition("=")
        sources.append(
            CheckpointSource(
                pretrained.resolve(path), regs, name=name if sep else None, device=args.device
            )
        )
    if not sources:
        raise ConfigError("nothing to evaluate: give --generator CHECKPOINT or --reference rows")
    res = evaluate(feats, sources, cfg, regs, log=log)
    written = report.write(res, args.out)
    for p in written:
        print(p)
    if not any(p.suffix == ".png" for p in written):
        print("curves.png not written: matplotlib is not installed (pip install 'metagan[eval]')")
    return 0
