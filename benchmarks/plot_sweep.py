"""Plot the CPU sweep of ``benchmarks/cpu_sweep.sh`` (JSON lines) into one PNG.

python benchmarks/plot_sweep.py OUTDIR docs/bench_cpu.png   (needs matplotlib)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(folder: Path) -> list[dict]:
    out = []
    for f in sorted(folder.glob("*.jsonl")):
        out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


def series(data, x, **match):
    pts = sorted((r[x], r) for r in data if all(r[k] == v for k, v in match.items()))
    return [p[0] for p in pts], [p[1] for p in pts]


def main(folder: str, png: str) -> None:
    data = rows(Path(folder))
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    base = dict(image_size=28, inner_steps=5)
    for algo in ("fomaml", "maml"):
        for mode in ("sequential", "batched"):
            xs, rs = series(data, "tasks", algorithm=algo, mode=mode, **base)
            if xs:
                axes[0, 0].plot(xs, [r["sec_per_iter"] for r in rs], "o-", label=f"{algo} {mode}")
                axes[1, 0].plot(xs, [r["peak_mem_mb"] for r in rs], "o-", label=f"{algo} {mode}")
        xs, rs = series(data, "inner_steps", algorithm=algo, mode="batched", tasks=8, image_size=28)
        if xs:
            axes[0, 1].plot(xs, [r["sec_per_iter"] for r in rs], "o-", label=f"{algo} batched")
            axes[1, 1].plot(xs, [r["peak_mem_mb"] for r in rs], "o-", label=f"{algo} batched")
    for mode in ("sequential", "batched"):
        xs, rs = series(data, "image_size", algorithm="fomaml", mode=mode, tasks=8, inner_steps=5)
        if xs:
            axes[0, 2].plot(xs, [r["sec_per_iter"] for r in rs], "o-", label=f"fomaml {mode}")
            axes[1, 2].plot(xs, [r["peak_mem_mb"] for r in rs], "o-", label=f"fomaml {mode}")
    for ax, xl in zip(
        axes.T,
        ("tasks T (28 px, 5 steps)", "inner steps (T=8, 28 px)", "image size (T=8, 5 steps)"),
    ):
        ax[0].set_ylabel("s / meta-iteration")
        ax[1].set_ylabel("peak RSS (MB)")
        for a in ax:
            a.set_xlabel(xl)
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
    axes[0, 0].set_xscale("log", base=2)
    axes[1, 0].set_xscale("log", base=2)
    fig.suptitle("metagan bench on CPU (dcgan, z=64, K=5)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(png)


if __name__ == "__main__":
    main(*sys.argv[1:3])
