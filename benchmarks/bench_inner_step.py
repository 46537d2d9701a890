"""Benchmark of the fused CUDA inner step: bandwidth vs a device copy, time vs pure PyTorch.

    python benchmarks/bench_inner_step.py [--json PATH] [--sizes 1e5,1e6,...] [--budget-s 80]

For T x P from 1e5 to 1e8 fp32 elements and methods sgd, adam and adam with per-task clipping
and per-parameter (Meta-SGD) rates, it times (CUDA events, warm-up excluded, median of many
samples, each sample a back-to-back loop so launch gaps count as they would in training):

* ``fused``: ``torch.ops.metagan.inner_step`` (the CUDA kernel when ``backend() == "cuda"``);
  its achieved bandwidth = bytes read + written / time, and that as a percentage of
* ``copy``: ``dst.copy_(src)`` moving the same number of bytes (read + written);
* ``reference``: the pure-PyTorch reference on the flat (T, P) tensors;
* ``foreach``: what a peer without a fused kernel does: ``torch._foreach_*`` over the T per-task
  rows (sgd and adam only).

Prints a Markdown table; ``--json PATH`` also writes the numbers. Needs a CUDA GPU: without one
it prints one line and exits with status 2. The whole run stays within ``--budget-s`` seconds
(default 80): sizes that would not fit are skipped and reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

# (T, P): 1e5 .. 1e8 elements; T = 100 tasks is a typical meta-batch.
DEFAULT_SIZES = [(10, 10_000), (100, 10_000), (100, 100_000), (1_000, 100_000)]
CONFIGS = ("sgd", "adam", "adam+clip+lr(P)")
# fp32 arrays of T x P read / written by the fused op (params, grads, state ... ; outputs).
ARRAYS_MOVED = {"sgd": 3, "adam": 7, "adam+clip+lr(P)": 8}  # clip re-reads grads


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'1e5,1e6' -> (T, P) pairs with T = 10 for 1e5 and 100 above (P = n / T)."""
    sizes = []
    for item in text.split(","):
        n = int(float(item))
        t = 10 if n <= 100_000 else (100 if n <= 10_000_000 else 1_000)
        sizes.append((t, max(1, n // t)))
    return sizes


def cuda_time_ms(fn, *, target_ms: float = 150.0, max_samples: int = 30) -> float:
    """Median milliseconds per call; warm-up excluded; each sample loops to >= ~1 ms."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    est = max(start.elapsed_time(end), 1e-3)
    inner = max(1, min(100, int(1.0 / est)))
    samples = max(5, min(max_samples, int(target_ms / (est * inner))))
    times = []
    for _ in range(samples):
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def copy_time_ms(bytes_moved: int, dev: str) -> float:
    """``dst.copy_(src)`` that reads and writes ``bytes_moved`` bytes in total."""
    src = torch.empty(bytes_moved // 8, dtype=torch.float32, device=dev)
    dst = torch.empty_like(src)
    return cuda_time_ms(lambda: dst.copy_(src))


def foreach_sgd(ps, gs, lr):
    return torch._foreach_add(ps, gs, alpha=-lr)


def foreach_adam(ps, gs, ms, vs, lr, b1, b2, eps, step):
    m = torch._foreach_mul(ms, b1)
    torch._foreach_add_(m, gs, alpha=1 - b1)
    v = torch._foreach_mul(vs, b2)
    torch._foreach_addcmul_(v, gs, gs, value=1 - b2)
    denom = torch._foreach_div(v, 1 - b2**step)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    upd = torch._foreach_div(m, denom)
    return torch._foreach_add(ps, upd, alpha=-lr / (1 - b1**step)), m, v


def bench_size(T: int, P: int, config: str, op, reference, dev: str = "cuda") -> dict:
    n = T * P
    params = torch.randn(T, P, device=dev)
    grads = torch.randn(T, P, device=dev)
    lr, b1, b2, eps, step = 1e-3, 0.9, 0.999, 1e-8, 3
    method = "sgd" if config == "sgd" else "adam"
    s1 = torch.randn(T, P, device=dev) if method == "adam" else None
    s2 = torch.rand(T, P, device=dev) if method == "adam" else None
    lr_t, clip = None, None
    if config == "adam+clip+lr(P)":
        lr_t, clip = torch.full((P,), lr, device=dev), 1.0
    args = (params, grads, lr_t, 1.0 if lr_t is not None else lr, method, s1, s2, step,
            0.9, b1, b2, eps, 0.0, clip)  # fmt: skip

    bytes_moved = ARRAYS_MOVED[config] * n * 4
    fused_ms = cuda_time_ms(lambda: op(*args))
    copy_ms = copy_time_ms(bytes_moved, dev)
    ref_ms = cuda_time_ms(lambda: reference(*args))
    foreach_ms = None
    if config in ("sgd", "adam"):
        ps, gs = list(params.unbind(0)), list(grads.unbind(0))
        if config == "sgd":
            foreach_ms = cuda_time_ms(lambda: foreach_sgd(ps, gs, lr))
        else:
            ms, vs = list(s1.unbind(0)), list(s2.unbind(0))
            foreach_ms = cuda_time_ms(lambda: foreach_adam(ps, gs, ms, vs, lr, b1, b2, eps, step))
    fused_gbs = bytes_moved / fused_ms / 1e6
    copy_gbs = bytes_moved / copy_ms / 1e6
    return {
        "config": config,
        "T": T,
        "P": P,
        "elements": n,
        "bytes_moved": bytes_moved,
        "fused_us": fused_ms * 1e3,
        "fused_GBps": fused_gbs,
        "copy_GBps": copy_gbs,
        "fused_pct_of_copy": 100.0 * fused_gbs / copy_gbs,
        "reference_us": ref_ms * 1e3,
        "foreach_us": None if foreach_ms is None else foreach_ms * 1e3,
        "speedup_vs_reference": ref_ms / fused_ms,
        "speedup_vs_foreach": None if foreach_ms is None else foreach_ms / fused_ms,
    }


def markdown(rows: list[dict]) -> str:
    head = (
        "| config | T | P | elements | fused µs | fused GB/s | copy GB/s | % of copy "
        "| reference µs | foreach µs | × vs reference | × vs foreach |"
    )
    lines = [head, "|" + "---|" * 12]

    def f(x, fmt):
        return "—" if x is None else format(x, fmt)

    for r in rows:
        lines.append(
            f"| {r['config']} | {r['T']} | {r['P']} | {r['elements']:.0e} | {r['fused_us']:.1f} "
            f"| {r['fused_GBps']:.0f} | {r['copy_GBps']:.0f} | {r['fused_pct_of_copy']:.0f}% "
            f"| {r['reference_us']:.1f} | {f(r['foreach_us'], '.1f')} "
            f"| {r['speedup_vs_reference']:.1f} | {f(r['speedup_vs_foreach'], '.1f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--sizes", help="comma-separated element counts, e.g. 1e5,1e6,1e7,1e8")
    ap.add_argument("--budget-s", type=float, default=80.0, help="stop starting sizes after this")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_inner_step: needs a CUDA GPU (torch.cuda.is_available() is False)")
        return 2

    from metagan import ops
    from metagan.ops.reference import inner_step_reference

    t0 = time.monotonic()
    info = ops.backend_info()
    dev = torch.cuda.get_device_properties(0)
    print(f"# inner_step benchmark: {dev.name}, torch {torch.__version__}, ops: {info}")
    if ops.backend() != "cuda":
        print("WARNING: the CUDA kernel is not in use; the 'fused' column times the reference")
    op = torch.ops.metagan.inner_step.default
    sizes = parse_sizes(a.sizes) if a.sizes else DEFAULT_SIZES
    rows, skipped = [], []
    for T, P in sizes:
        for config in CONFIGS:
            if time.monotonic() - t0 > a.budget_s:
                skipped.append(f"{config} T={T} P={P}")
                continue
            rows.append(bench_size(T, P, config, op, inner_step_reference))
            torch.cuda.empty_cache()
    print()
    print(markdown(rows))
    if skipped:
        print(f"\nskipped (over the {a.budget_s:.0f} s budget): {', '.join(skipped)}")
    elapsed = time.monotonic() - t0
    print(f"\n{len(rows)} measurements in {elapsed:.1f} s")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "device": dev.name,
            "torch": torch.__version__,
            "backend": info,
            "dtype": "float32",
            "timing": "CUDA events, warm-up excluded, median of samples of back-to-back calls",
            "rows": rows,
            "skipped": skipped,
            "elapsed_s": elapsed,
        }
        a.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
