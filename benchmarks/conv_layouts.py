"""Per-task convolutions of the W workload's dcgan, timed three ways (forward + backward to
input, weight and bias; T tasks of B images each, one torch thread):

    loop   F.conv2d per task (what learn2learn/higher users run)
    aten   vmap over tasks with PyTorch's batching rule (a contiguous grouped convolution)
    op     vmap over tasks through metagan::task_conv2d (its vmap rule's layout choice; every
           layer, whether or not the engine routes it)

This is the measurement behind ``metagan.ops.conv.routed``: which layers the engine sends
through the op. Usage: python benchmarks/conv_layouts.py [--tasks 8] [--repeats 7] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import vmap

from metagan.ops import conv

# name: (c_in, c_out, kernel, stride, padding, input size) of dcgan at 28 px, width 32
LAYERS = {
    "D conv 1 -> 32, 4x4/2": (1, 32, 4, 2, 1, 28),
    "D conv 32 -> 64, 4x4/2": (32, 64, 4, 2, 1, 14),
    "G conv 128 -> 64, 3x3": (128, 64, 3, 1, 1, 14),
    "G conv 64 -> 1, 3x3": (64, 1, 3, 1, 1, 28),
}


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def time_layer(ci, co, k, s, pad, hw, T, B, repeats) -> dict[str, float]:
    """Median ms of forward + backward of one layer, the three ways."""
    x = torch.randn(T, B, ci, hw, hw, requires_grad=True)
    w = (torch.randn(T, co, ci, k, k) * 0.1).requires_grad_()
    b = torch.zeros(T, co, requires_grad=True)

    def backward(y):
        torch.autograd.grad(y, (x, w, b), torch.ones_like(y))

    def loop():
        backward(torch.stack([F.conv2d(x[t], w[t], b[t], s, pad) for t in range(T)]))

    def aten():
        backward(vmap(lambda *a: F.conv2d(*a, s, pad))(x, w, b))

    def op():
        backward(vmap(lambda *a: conv.conv2d(*a, [s, s], [pad, pad]))(x, w, b))

    return {f.__name__: median_ms(f, repeats) for f in (loop, aten, op)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=8)
    p.add_argument("--images", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    T, B = args.tasks, args.images
    print("| layer | loop ms | aten (vmap) ms | op (vmap) ms | op ÷ aten |")
    print("|---|---|---|---|---|")
    for name, layer in LAYERS.items():
        ms = time_layer(*layer, T, B, args.repeats)
        print(f"| {name} | {ms['loop']:.1f} | {ms['aten']:.1f} | {ms['op']:.1f} | "
              f"{ms['op'] / ms['aten']:.2f} |", flush=True)  # fmt: skip
        if args.json:
            with open(args.json, "a") as f:
                row = dict(layer=name, tasks=T, images=B, torch=torch.__version__, **ms)
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
