"""A generator on the validation classes only, at the choices an evaluation already made there.

    python benchmarks/val_check.py --results runs/free/Balinese/eval/results.json \
        --features runs/free/Balinese/features.pt --generator between=CKPT [--steps 0]

For every k of the earlier evaluation's augmentation protocol: the validation accuracy of
real + the generator's samples (at that evaluation's mix ratio, with its on-the-fly transform
and classifier steps) beside the free rows' validation accuracies recorded in
``augment.<k>.choice.validation`` — the numbers `metagan eval` chooses on, at a fraction of
its cost (no meta-test class is touched). A cheap screen before spending a fold's evaluation on
a candidate; the mix ratio is not re-chosen, so a full evaluation may differ slightly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch

from metagan import plugins
from metagan.eval import features as F
from metagan.eval import free
from metagan.eval.classifier import FitConfig
from metagan.eval.data import load_classes, validation_classes
from metagan.eval.protocol import _Protocol
from metagan.eval.sources import CheckpointSource, FreeSource


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", required=True, help="results.json of an earlier evaluation")
    ap.add_argument("--features", required=True)
    ap.add_argument("--generator", action="append", default=[], metavar="NAME=CKPT")
    ap.add_argument("--steps", type=int, default=0, help="adaptation steps")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = json.loads(open(a.results).read())
    cfg = res["config"]
    seed, num = cfg["seed"], cfg["augment_num"]
    regs = plugins.get()
    feats = F.load(a.features)
    _, session = load_classes(feats, regs, seed)
    val = validation_classes(session, cfg["val_classes"], seed)
    gens = []
    for item in a.generator:
        name, _, path = item.partition("=")
        gens.append(CheckpointSource(path, regs, name=name))
    bg = free.background_of_data(feats.data)
    out = {}
    for k, aug in res["augment"].items():
        t0 = time.perf_counter()
        ch = aug["choice"]
        p = _Protocol.make(val, int(k))
        fc = FitConfig(steps=ch["classifier_steps"], seed=seed)
        fly = FreeSource(ch["onthefly"], bg, ch["strengths"]).jitter
        p.generate(gens, a.steps, num, seed)
        mix = ch["mix"]
        scores = {g.name: p.accuracy(g.name, mix, dataclasses.replace(fc), fly) for g in gens}
        ref = ch["reference"]
        out[k] = {"mix": mix, "reference": ref, "free": ch["validation"]["free"], "rows": scores}
        print(
            f"k={k} (mix {mix}, on the fly {ch['onthefly']}): reference {ref} "
            f"{ch['validation']['free'][ref]:.3f}; "
            + ", ".join(f"{n} {v:.3f}" for n, v in scores.items())
            + f"  ({time.perf_counter() - t0:.0f} s)"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
