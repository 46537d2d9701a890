"""Give a `between` checkpoint its deformation bank, fitted on meta-train characters.

    python benchmarks/between_init.py runs/between/Greek/scratch/checkpoint.pt \
        --out runs/between/Greek/init/checkpoint.pt [--pairs 8] [--between 1] [--bank 1] [--jitter 1]

Registers ``--pairs`` random pairs of drawings of every meta-train character of the
checkpoint's split (the ``--val-classes`` validation characters of `metagan eval` left out, so
that choices made there are not made on the bank's own data), fits a rank-8 PCA of the warps
(:class:`metagan.registration.FieldBank`) and writes it into the generator's ``bank``, with
the scales ``scale = (--between, --bank)`` and the jitter's gains ``log(--jitter)``. The
meta-test characters are never opened. Writes a new checkpoint; prints what it fitted.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import torch

from metagan import checkpoint
from metagan.adaptation import load_session
from metagan.eval.data import validation_classes
from metagan.registration import FieldBank, register_vectors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs", type=int, default=8, help="registered pairs per character")
    ap.add_argument("--between", type=float, default=1.0, help="largest fraction towards shot j")
    ap.add_argument("--bank", type=float, default=1.0, help="scale of the bank's deformations")
    ap.add_argument("--jitter", type=float, default=1.0, help="multiplier of the free jitter")
    ap.add_argument("--val-classes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ckpt = checkpoint.load(a.checkpoint)
    session, params = load_session(a.checkpoint, ckpt=ckpt)
    if session.cfg.model.arch != "between":
        print(
            f"{a.checkpoint} is a {session.cfg.model.arch!r} checkpoint, not 'between'",
            file=sys.stderr,
        )
        return 2
    val = set(validation_classes(session, a.val_classes, a.seed).names)
    names = [c.name for c in session.dataset.classes]
    chosen = [i for i in session.split[0] if names[i] not in val]
    gen = torch.Generator().manual_seed(a.seed)
    src, dst = [], []
    for i in chosen:
        x = session.cache.get(i)  # (N, C, H, W) in [-1, 1]
        for _ in range(a.pairs):
            u, v = torch.randperm(x.shape[0], generator=gen)[:2].tolist()
            src.append(x[u])
            dst.append(x[v])
    paper = -1.0 if session.cfg.data.invert else 1.0
    fields = register_vectors(torch.stack(src).float(), torch.stack(dst).float(), paper)
    G = session.engine.G
    rank = dict(zip(G.spec.names, G.spec.shapes))["bank"][0]
    bank = FieldBank.fit(fields, rank=rank)
    g = params["g"].detach().clone()
    values = {
        "bank": bank.basis,
        "scale": torch.tensor([a.between, a.bank]),
        "gain": torch.full((3,), math.log(a.jitter)),
    }
    for name, off, numel in G.spec.segments():
        if name in values:
            g[off : off + numel] = values[name].reshape(-1).to(g)
    out = {**ckpt, "params": {**{k: v.detach() for k, v in params.items()}, "g": g}}
    checkpoint.save(a.out, out)
    sd = bank.basis.norm(dim=1) * 14  # grid units -> px at 28 px (upper bound over the field)
    print(
        f"bank: {len(src)} pairs of {len(chosen)} meta-train characters ({len(val)} validation "
        f"ones left out), rank {rank}, component norms {[round(float(s), 2) for s in sd]} px; "
        f"scale between {a.between}, bank {a.bank}, jitter x{a.jitter}; {a.out} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
