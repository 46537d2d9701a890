"""Quick validation of noise-only generators on classes of ONE alphabet held out of their
training: how the choices of docs/results.md's noise-only table were made (never on a reported
meta-test fold).

    python benchmarks/tune_noise_only.py --group Korean --features F.pt CKPT [CKPT ...] \
        [--steps 0 1 5 10 20] [--shots 5] [--num 32] [--inner inner.lr_g=0.5 ...] [--out J.json]

The checkpoints must hold ``--group`` out of meta-training (e.g. trained with
``data.test_groups=["Korean","Latin"]``: Latin's classes are then never looked at). For each
checkpoint and step it prints judge fidelity (a classifier trained on the group's non-shot
drawings), memorisation and FID, scored exactly as ``metagan eval`` scores them
(:func:`metagan.eval.run.score`).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from metagan import plugins
from metagan.eval import features as F
from metagan.eval.classifier import FitConfig, embed, fit, predict
from metagan.eval.data import _class_data
from metagan.eval.run import score
from metagan.eval.sources import CheckpointSource


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--features", required=True)
    p.add_argument("--group", required=True, help="the held-out alphabet to validate on")
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 1, 5, 10, 20])
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--inner", nargs="*", default=[], help="inner.* overrides for adaptation")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    regs = plugins.get()
    feats = F.load(a.features)
    out = {}
    judge = None
    for path in a.checkpoints:
        src = CheckpointSource(path, regs)
        if a.inner:
            from metagan.adaptation import load_session

            src.session, src.params = load_session(path, regs, overrides=a.inner)
        s = src.session
        if judge is None:  # the group's classes, shots first (as metagan eval orders them)
            names = [c.name for c in s.dataset.classes]
            idx = [i for i in s.split[1] if s.dataset.classes[i].group == a.group]
            if not idx:
                raise SystemExit(f"no held-out class of group {a.group!r} in {path}")
            classes = _class_data(s, idx, 0)
            shots, real = classes.split(a.shots)
            y = torch.cat([torch.full((x.shape[0],), c) for c, x in enumerate(real)])
            judge = fit(torch.cat(real), y, len(idx), FitConfig(steps=400, seed=0))
            real_f = [embed(feats.net, x) for x in real]
            shot_f = [embed(feats.net, x) for x in shots]
            print(f"{a.group}: {len(idx)} classes, e.g. {names[idx[0]]}", flush=True)
        t0 = time.perf_counter()
        per = src.samples(shots, a.num, steps=sorted(set(a.steps)), seed=0)
        rows = {}
        for step, smp in per.items():
            m = score([embed(feats.net, x) for x in smp.images],
                      [predict(judge, x) for x in smp.images], real_f, shot_f)  # fmt: skip
            rows[step] = {k: m[k] for k in ("fidelity", "memorisation", "fid", "diversity")}
            rows[step]["failed"] = int(smp.failed.sum())
            print(
                f"{path} step {step:>3}: fidelity {m['fidelity']:.3f}  memorisation "
                f"{m['memorisation']:.3f}  FID {m['fid']:.1f}  diversity {m['diversity']:.2f}"
                f"  failed {rows[step]['failed']}",
                flush=True,
            )
        out[path] = {"inner": a.inner, "steps": rows, "seconds": time.perf_counter() - t0}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
