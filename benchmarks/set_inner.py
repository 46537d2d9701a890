"""Copy a checkpoint with other ``inner.*`` settings (how it adapts), e.g. the adaptation rate
chosen on validation classes, so that ``metagan eval`` adapts it that way:

    python benchmarks/set_inner.py runs/x/checkpoint.pt runs/x/adapt.pt inner.lr_g=0.003 inner.lr_d=0.003

Only ``inner.*`` keys are accepted; parameters, step and the rest of the config are kept.
"""

import argparse
from pathlib import Path

from metagan import checkpoint, config
from metagan.errors import MetaganError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("overrides", nargs="+", help="inner.key=value")
    a = p.parse_args(argv)
    bad = [o for o in a.overrides if not o.startswith("inner.")]
    if bad:
        raise SystemExit(f"set_inner: only inner.* overrides are accepted, got {bad[0]!r}")
    try:
        ckpt = checkpoint.load(a.source)
        cfg = config.load(None, a.overrides, base=ckpt["config"])
        checkpoint.save(a.dest, {**ckpt, "config": cfg.to_dict()})
    except MetaganError as exc:
        raise SystemExit(f"set_inner: {exc}") from None
    print(f"{a.dest}: inner = {cfg.to_dict()['inner']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
