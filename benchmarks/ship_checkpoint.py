"""Make a trained checkpoint one that ships with the package: keep only what adapting and
sampling need (config, meta-parameters, step), drop the optimizer and RNG state (two thirds of
the file) and the machine-specific data path, and write it to ``metagan/pretrained/NAME.pt``
with the digest of its tensors (``checkpoint.save``), read back and verified before it is reported.

    python benchmarks/ship_checkpoint.py runs/ship/omniglot-warp/checkpoint.pt omniglot-warp

The model card (``metagan/pretrained/NAME.md``) is written by hand beside it: data, config,
hardware, time, and its table in docs/results.md.
"""

import argparse
import math
from pathlib import Path

import torch

from metagan import checkpoint
from metagan.errors import MetaganError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("name")
    p.add_argument(
        "--dest", type=Path, default=Path(__file__).parents[1] / "metagan" / "pretrained"
    )
    args = p.parse_args()
    try:
        ckpt = checkpoint.load(args.source)
        checkpoint.check_finite(args.source, ckpt["params"].values(), "parameters")
    except MetaganError as exc:
        raise SystemExit(f"ship_checkpoint: {exc}") from None
    config = dict(ckpt["config"])
    config["data"] = dict(config["data"], root="")  # the trainer's path means nothing elsewhere
    out = args.dest / f"{args.name}.pt"
    checkpoint.save(out, {"config": config, "params": ckpt["params"], "step": ckpt["step"]})
    shipped = checkpoint.load(out)  # the digest checked against what was written
    for k, v in ckpt["params"].items():  # bit for bit the trained parameters
        assert v.dtype == shipped["params"][k].dtype and torch.equal(v, shipped["params"][k]), k
    size = out.stat().st_size
    n = sum(math.prod(t.shape) for t in ckpt["params"].values())
    print(f"{out}: {size / 1e6:.2f} MB, {n} parameters, meta-iteration {ckpt['step']}")


if __name__ == "__main__":
    main()
