"""A grid of unseen classes adapted step by step: for each class, one row per adaptation step,
each row its K shots, a line, then samples after that many inner steps (the same z in every row).

    python benchmarks/adaptation_grid.py CKPT --out docs/img/grid.png [--classes 4] \
        [--steps 0 1 5 20] [--shots 5] [--num 8] [--group Latin]

Classes are the checkpoint's meta-test classes (the first ``--classes`` of ``--group`` when
given), their shots the first K of the seeded permutation ``metagan eval`` uses, and the
samples come from :class:`metagan.eval.sources.CheckpointSource`, exactly as the eval scores them.
"""

from __future__ import annotations

import argparse

import torch

from metagan import plugins
from metagan.data.grid import save_grid
from metagan.eval.data import _class_data
from metagan.eval.sources import CheckpointSource


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--group", default=None)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 1, 5, 20])
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--num", type=int, default=8)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    src = CheckpointSource(a.checkpoint, plugins.get())
    s = src.session
    idx = [i for i in s.split[1] if a.group is None or s.dataset.classes[i].group == a.group]
    if not idx:
        raise SystemExit(f"adaptation_grid: no meta-test class of group {a.group!r}")
    data = _class_data(s, idx[: a.classes], 0)
    shots, _ = data.split(a.shots)
    per = src.samples(shots, a.num, steps=sorted(set(a.steps)), seed=0)
    rows, labels = [], []
    for c, name in enumerate(data.names):
        for step in sorted(per):
            rows.append(torch.cat([shots[c], per[step].images[c]]))
            labels.append(f"{name} step {step}")
    path = save_grid(rows, a.out, invert=s.cfg.data.invert, split=a.shots, labels=labels)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
