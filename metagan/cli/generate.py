"""``metagan adapt`` and ``metagan sample``: a checkpoint to samples, adapted or not, through
the Python API (:class:`metagan.api.FewShotGenerator`), so both give the same samples for the
same seed and make the same checks."""

from __future__ import annotations

from pathlib import Path

import torch

from metagan import memory
from metagan.api import FewShotGenerator
from metagan.cli._args import checkpoint_arg, positive, seed_arg, slug, write_samples
from metagan.errors import ConfigError, DataError
from metagan.io import check_writable


def add_parsers(sub) -> None:
    a = sub.add_parser("adapt", help="adapt a checkpoint to K images and sample")
    a.add_argument("--checkpoint", type=checkpoint_arg, required=True)
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
        type=positive("--unseen"),
        metavar="N",
        help="the first N meta-test classes of the checkpoint's dataset, adapted at once",
    )
    a.add_argument(
        "--shots",
        type=positive("--shots"),
        default=None,
        help="K images to adapt on (default: the checkpoint's)",
    )
    a.add_argument(
        "--steps",
        type=positive("--steps", 10_000),
        default=None,
        help="inner steps (default: the checkpoint's)",
    )
    a.add_argument("--num", type=positive("--num"), default=16, help="samples to write")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--seed", type=seed_arg, default=0)
    a.add_argument(
        "overrides",
        nargs="*",
        metavar="inner.key=value",
        help="adapt differently than trained, e.g. inner.lr_g=0.01",
    )
    a.set_defaults(func=cmd_adapt)

    s = sub.add_parser("sample", help="sample the meta-learned (unadapted) generator")
    s.add_argument("--checkpoint", type=checkpoint_arg, required=True)
    s.add_argument(
        "--images", type=Path,
        help="folder with images of one class to condition on (conditional architectures only; all are used)",
    )  # fmt: skip
    s.add_argument("--num", type=positive("--num"), default=16)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=seed_arg, default=0)
    s.set_defaults(func=cmd_sample)


def cmd_adapt(args, regs) -> int:
    """``metagan adapt``: :meth:`FewShotGenerator.adapt` (``--images``) or
    :meth:`FewShotGenerator.adapt_classes` (``--class``, ``--unseen``), then ``.sample``."""
    from metagan.adaptation import load_session, read_shots
    from metagan.data.grid import save_grid
    from metagan.io import atomic_write

    check_writable(args.out, "--out")
    s, params = load_session(args.checkpoint, regs, overrides=args.overrides, num=args.num)
    g = FewShotGenerator(s, params, args.checkpoint)
    K = args.shots or s.cfg.data.shots
    steps = args.steps or s.cfg.inner.steps
    invert = s.cfg.data.invert
    if args.images is not None:
        adapted = g.adapt(read_shots(args.images, K), steps=steps, seed=args.seed)
        shots, names = adapted.shots[None], [args.images.name]  # (1, K, C, H, W)
    else:
        shots, names = _dataset_shots(args, s, K)  # (T, K, C, H, W)
        memory.check_sampling(s.footprint, shots.shape[0], args.num, s.cfg, s.device)
        adapted = g.adapt_classes(shots, steps=steps, seed=args.seed)
    samples = adapted.sample(args.num).cpu()
    samples = samples[None] if args.images is not None else samples  # (T, num, C, H, W)
    for name, gen_imgs in zip(names, samples):
        write_samples(args.out if len(names) == 1 else args.out / slug(name), gen_imgs, invert)
    grid = args.out / "grid.png"
    rows = [torch.cat([k, x]) for k, x in zip(shots.cpu(), samples)]
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


def _dataset_shots(args, s, K: int) -> tuple[torch.Tensor, list[str]]:
    """K seeded shots of each class ``--class`` or ``--unseen`` names: (T, K, C, H, W), names."""
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
    return torch.stack(rows), [s.dataset.classes[i].name for i in classes]


def cmd_sample(args, regs) -> int:
    """``metagan sample``: :meth:`FewShotGenerator.sample`."""
    from metagan.adaptation import load_session, read_shots
    from metagan.data.grid import save_grid

    check_writable(args.out, "--out")
    s, params = load_session(args.checkpoint, regs, num=args.num)
    g = FewShotGenerator(s, params, args.checkpoint)
    invert = s.cfg.data.invert
    pil = None if args.images is None else read_shots(args.images)  # every image of the folder
    samples = g.sample(args.num, seed=args.seed, shots=pil).cpu()
    write_samples(args.out, samples, invert)
    shots = None if pil is None else g.images(pil).cpu()  # (K, C, H, W)
    row = samples if shots is None else torch.cat([shots, samples])
    split = 0 if shots is None else shots.shape[0]  # a line between the shots and the samples
    save_grid([row], args.out / "grid.png", invert=invert, split=split)
    print(
        f"wrote {args.num} samples of the meta-learned generator to {args.out}; grid: {args.out / 'grid.png'}"
    )
    return 0
