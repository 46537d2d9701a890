"""Plot a `metagan bench` sweep (JSON lines) into one PNG: cost against T, inner steps and size.

python benchmarks/plot_sweep.py OUTDIR docs/bench_cpu.png              (benchmarks/cpu_sweep.sh)
python benchmarks/plot_sweep.py docs/bench_gpu_h100.jsonl docs/bench_gpu.png 32
                                                            (benchmarks/gpu_session.sh)
The optional third argument is the T of the steps and size panels (default 8). Needs matplotlib.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path: Path) -> list[dict]:
    out = []
    for f in sorted(path.glob("*.jsonl")) if path.is_dir() else [path]:
        out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


def series(data, x, **match):
    pts: dict = {}
    for r in data:  # the first row of each x (a later rerun of a point does not replace it)
        if r.get("arch", "dcgan") == "dcgan" and all(r[k] == v for k, v in match.items()):
            pts.setdefault(r[x], r)
    xs = sorted(pts)
    return xs, [pts[v] for v in xs]


def main(path: str, png: str, sweep_tasks: str = "8") -> None:
    data = rows(Path(path))
    T = int(sweep_tasks)
    modes = list(dict.fromkeys(r["mode"] for r in data))  # in the order they ran
    device = "GPU" if data and data[0]["device"].startswith("cuda") else "CPU"
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    base = dict(image_size=28, inner_steps=5)
    for algo in ("fomaml", "maml"):
        for mode in modes:
            xs, rs = series(data, "tasks", algorithm=algo, mode=mode, **base)
            if xs:
                axes[0, 0].plot(xs, [r["sec_per_iter"] for r in rs], "o-", label=f"{algo} {mode}")
                axes[1, 0].plot(xs, [r["peak_mem_mb"] for r in rs], "o-", label=f"{algo} {mode}")
        for mode in modes[1:] or modes:  # the batched modes
            xs, rs = series(data, "inner_steps", algorithm=algo, mode=mode, tasks=T, image_size=28)
            if len(xs) > 1:
                axes[0, 1].plot(xs, [r["sec_per_iter"] for r in rs], "o-", label=f"{algo} {mode}")
                axes[1, 1].plot(xs, [r["peak_mem_mb"] for r in rs], "o-", label=f"{algo} {mode}")
    for mode in modes:
        xs, rs = series(data, "image_size", algorithm="fomaml", mode=mode, tasks=T, inner_steps=5)
        if len(xs) > 1:
            axes[0, 2].plot(xs, [r["sec_per_iter"] for r in rs], "o-", label=f"fomaml {mode}")
            axes[1, 2].plot(xs, [r["peak_mem_mb"] for r in rs], "o-", label=f"fomaml {mode}")
    for ax, xl in zip(
        axes.T,
        ("tasks T (28 px, 5 steps)", f"inner steps (T={T}, 28 px)", f"image size (T={T}, 5 steps)"),
    ):
        ax[0].set_ylabel("s / meta-iteration")
        ax[1].set_ylabel("peak RSS (MB)" if device == "CPU" else "peak allocated (MB)")
        for a in ax:
            a.set_xlabel(xl)
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
    axes[0, 0].set_xscale("log", base=2)
    axes[1, 0].set_xscale("log", base=2)
    if device == "GPU":  # the sequential loop is 10-40x slower: a log axis keeps the rest visible
        axes[0, 0].set_yscale("log")
    fig.suptitle(f"metagan bench on {device} (dcgan, z=64, K=5)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    print(png)


if __name__ == "__main__":
    main(*sys.argv[1:4])
