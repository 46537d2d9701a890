"""``metagan bench``: time whole meta-iterations, batched against the sequential per-task loop.

Every row times complete meta-iterations (the algorithm's meta-gradients plus the Adam step)
on random images of the requested size, after warm-up, and reports the median of several
runs: seconds per meta-iteration, tasks/s, inner steps/s (T × S per iteration), peak memory
(the process's peak RSS, reset before each row, on CPU; ``torch.cuda.max_memory_allocated``
on GPU, for ``batched-graph`` reset before the capture, which allocates the graph's memory)
and the achieved FLOP/s (FLOPs of one iteration counted by
``torch.utils.flop_counter.FlopCounterMode``) beside the machine's matmul rate measured in
the same run (fp32 sgemm on CPU, TF32 on GPU), so the distance to the hardware limit is on
screen. All modes of one invocation run side by side, so their ratios are comparable.

Modes:
    sequential   the reference per-task Python loop with per-tensor autograd (what peers do)
    batched      all tasks at once through torch.func (vmap), pure-PyTorch inner step
    batched-ext  batched, with the fused CUDA inner-step kernel (CUDA only, when built)
    batched-graph  batched-ext (or batched, without the extension) replayed from a CUDA graph
                 (:mod:`metagan.graphs`; CUDA only); the capture is not timed
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import torch

from metagan import ops
from metagan.algorithm import MetaConfig
from metagan.data.tasks import TaskBatch
from metagan.errors import ConfigError
from metagan.inner import InnerConfig, Noise
from metagan.models import ArchConfig
from metagan.session import ENGINES


@dataclass
class Row:
    algorithm: str
    mode: str
    tasks: int
    arch: str
    image_size: int
    shots: int
    inner_steps: int
    device: str
    sec_per_iter: float  # median
    sec_iqr: float  # interquartile range of the timed runs
    tasks_per_s: float
    inner_steps_per_s: float
    peak_mem_mb: float
    gflop_per_iter: float
    achieved_gflops: float
    matmul_gflops: float  # the machine's measured rate, same run
    speedup_vs_sequential: float | None = None
    recompute: bool = False
    channels: int = 1


def machine_matmul_gflops(device: torch.device, *, repeats: int = 10) -> float:
    """The machine's measured matmul rate: fp32 sgemm on CPU (best median over 1024² and 2048²),
    TF32 on CUDA (8192²). Several sizes and a long warm-up, because a single small product
    on a CPU that was idle reads low (clock ramp-up, thread-pool start)."""
    sizes = (1024, 2048) if device.type == "cpu" else (8192,)
    best = 0.0
    ctx = _tf32() if device.type == "cuda" else contextlib.nullcontext()
    with ctx:
        for n in sizes:
            a = torch.randn(n, n, device=device)
            b = torch.randn(n, n, device=device)
            times = _time(lambda: a @ b, device, warmup=3, repeats=repeats)  # noqa: B023
            best = max(best, 2 * n**3 / statistics.median(times) / 1e9)
    return best


@contextlib.contextmanager
def _tf32():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device, *, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            out.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return out


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError):  # Linux: "5" resets the peak RSS (VmHWM)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")


def _peak_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@dataclass(frozen=True)
class Workload:
    """One benchmarked setting (hashable: FLOP counts are cached per workload)."""

    algorithm: str
    tasks: int
    arch: str
    image_size: int
    shots: int
    queries: int
    inner_steps: int
    z_dim: int
    width: int
    device: str
    recompute: bool = False
    channels: int = 1
    meta_gradient: str = "separate"  # meta.meta_gradient
    task_chunk: int = 0  # meta.task_chunk


def workload_pair(registries, w: Workload):
    """The workload's G/D pair, on its device, initialised from seed 0 (the same in every mode)."""
    torch.manual_seed(0)
    pair = registries.architectures.get(w.arch)(
        ArchConfig(image_size=w.image_size, channels=w.channels, z_dim=w.z_dim, width=w.width)
    )
    pair.generator.to(w.device)
    pair.discriminator.to(w.device)
    return pair


def workload_data(w: Workload) -> tuple[TaskBatch, Noise]:
    """The workload's random images and latent codes (seed 0; the same in every mode)."""
    device = torch.device(w.device)
    gen = torch.Generator().manual_seed(0)
    size = (w.channels, w.image_size, w.image_size)
    batch = TaskBatch(
        support=(torch.rand(w.tasks, w.shots, *size, generator=gen) * 2 - 1).to(
            device
        ),  # (T, K, C, H, W)
        query=(torch.rand(w.tasks, max(w.queries, 1), *size, generator=gen) * 2 - 1).to(device),
        classes=torch.arange(w.tasks, device=device),
    )
    noise = Noise.draw(w.inner_steps, w.tasks, w.shots, w.z_dim, generator=gen, device=device)
    return batch, noise


def make_iteration(registries, w: Workload, engine: str, *, graph: bool = False):
    """A closure that runs one whole meta-iteration (meta-gradients + Adam step) on random data;
    ``graph``: the meta-gradients replayed from a CUDA graph captured here."""
    pair = workload_pair(registries, w)
    inner = InnerConfig(steps=w.inner_steps, recompute=w.recompute)
    meta = MetaConfig(
        algorithm=w.algorithm, tasks=w.tasks, meta_gradient=w.meta_gradient,
        task_chunk=w.task_chunk,
    )  # fmt: skip
    eng = ENGINES[engine](pair, registries.losses.get("nonsaturating"), inner)
    algo = registries.algorithms.get(w.algorithm)(meta=meta, inner=inner)
    g, d = eng.G.init_flat(), eng.D.init_flat()
    params = {
        k: torch.nn.Parameter(v.clone())
        for k, v in {"g": g, "d": d, **algo.extra_parameters(g, d)}.items()
    }
    opt = torch.optim.Adam(params.values(), lr=meta.lr, betas=meta.betas)
    batch, noise = workload_data(w)
    step = algo.step
    if graph:
        from metagan.graphs import GraphedMetaStep

        graphed = GraphedMetaStep(algo, eng, params, batch, noise)
        step = lambda p, b, n, e: graphed.step(b, n)  # noqa: E731

    def iteration():
        res = step(params, batch, noise, eng)
        for k, p in params.items():
            p.grad = res.grads[k]
        opt.step()
        opt.zero_grad(set_to_none=True)

    iteration.meta_gradients = lambda: step(params, batch, noise, eng).grads  # for checks
    return iteration


_FLOPS: dict[Workload, int] = {}


def model_flops(registries, w: Workload) -> int:
    """The useful FLOPs of one meta-iteration, counted on the sequential engine (plain per-task
    convolutions and matmuls) so that every mode is charged the same work. Counting the batched
    engine itself over-counts: vmap turns per-task convolutions into grouped ones, which
    FlopCounterMode charges as if ungrouped (seen: 9x at T=32)."""
    if w not in _FLOPS:
        _FLOPS[w] = count_flops(make_iteration(registries, w, "sequential"))
    return _FLOPS[w]


def bench_one(
    registries,
    w: Workload,
    *,
    mode: str,
    repeats: int,
    warmup: int,
    flops: bool,
    matmul_gflops: float,
) -> Row:
    device = torch.device(w.device)
    engine = "sequential" if mode == "sequential" else "batched"
    graph = mode == "batched-graph"
    if graph:  # the capture allocates the graph's intermediates: count them in the peak
        _reset_peak(device)
    iteration = make_iteration(registries, w, engine, graph=graph)
    # "batched" on a GPU is the pure-PyTorch path; "batched-ext" lets the dispatcher pick the fused kernel
    ctx = (
        ops.reference_only()
        if mode == "batched" and device.type == "cuda"
        else contextlib.nullcontext()
    )
    with ctx:
        if not graph:
            _reset_peak(device)
        times = _time(iteration, device, warmup=warmup, repeats=repeats)
        peak = _peak_mb(device)
    n_flops = model_flops(registries, w) if flops else 0
    med = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [med, med, med]
    return Row(
        algorithm=w.algorithm, mode=mode, tasks=w.tasks, arch=w.arch, image_size=w.image_size, shots=w.shots,
        inner_steps=w.inner_steps, device=w.device, sec_per_iter=med, sec_iqr=q[2] - q[0],
        tasks_per_s=w.tasks / med, inner_steps_per_s=w.tasks * w.inner_steps / med, peak_mem_mb=peak,
        gflop_per_iter=n_flops / 1e9, achieved_gflops=n_flops / med / 1e9, matmul_gflops=matmul_gflops,
        recompute=w.recompute, channels=w.channels,
    )  # fmt: skip


MODES = ("sequential", "batched", "batched-ext", "batched-graph")


def default_modes(device: torch.device) -> list[str]:
    modes = ["sequential", "batched"]
    if device.type == "cuda":
        modes += ["batched-ext", "batched-graph"] if ops.backend() == "cuda" else ["batched-graph"]
    return modes


def run(args, registries) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA GPU is available; use --device cpu")
    modes = args.modes or default_modes(device)
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown bench mode {bad[0]!r}; valid: {', '.join(MODES)}")
    if "batched-graph" in modes and device.type != "cuda":
        raise ConfigError("mode batched-graph replays a CUDA graph; it needs --device cuda")
    if "batched-ext" in modes and not (device.type == "cuda" and ops.backend() == "cuda"):
        raise ConfigError(
            f"mode batched-ext needs a CUDA device and the compiled extension; ops backend: {ops.backend_info()}"
        )
    for name in args.algorithm:
        registries.algorithms.get(name)
    registries.architectures.get(args.arch)
    ArchConfig(image_size=args.image_size, channels=args.channels)  # validates the size
    if args.threads:
        torch.set_num_threads(args.threads)
    mm = machine_matmul_gflops(device)
    header = (
        f"# metagan bench: {platform.processor() or platform.machine()} "
        f"({_cpu_model()}), {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"device {_device_name(device)}, ops backend {ops.backend_info()}, "
        f"{time.strftime('%Y-%m-%d')}; matmul {mm:.1f} GFLOP/s"
    )
    print(header, file=sys.stderr if args.json == "-" else sys.stdout)
    rows: list[Row] = []
    failed: list[str] = []
    out = open(args.json, "w") if args.json not in (None, "-") else None  # noqa: SIM115
    try:
        if not args.json:
            print(
                "| algorithm | T | mode | s/iter (median) | tasks/s | inner steps/s | peak MB | GFLOP/iter | GFLOP/s | % of matmul | × sequential |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name in args.algorithm:
            for T in args.tasks:
                seq = None
                for mode in modes:
                    w = Workload(
                        algorithm=name, tasks=T, arch=args.arch, image_size=args.image_size, shots=args.shots,
                        queries=args.queries, inner_steps=args.inner_steps, z_dim=args.z_dim, width=args.width,
                        device=str(device),
                        recompute=args.recompute, channels=args.channels,
                    )  # fmt: skip
                    try:
                        row = bench_one(registries, w, mode=mode, repeats=args.repeats, warmup=args.warmup,
                                        flops=not args.no_flops, matmul_gflops=mm)  # fmt: skip
                    except ConfigError as e:  # a capture that failed: report it, time the rest
                        if mode != "batched-graph":
                            raise
                        failed.append(f"{name} T={T} {mode}: {e}")
                        print(f"# {failed[-1]}", file=sys.stderr, flush=True)
                        continue
                    if mode == "sequential":
                        seq = row
                    if seq is not None:
                        row.speedup_vs_sequential = seq.sec_per_iter / row.sec_per_iter
                    rows.append(row)
                    _emit(row, args.json, out)
    finally:
        if out:
            out.close()
    if failed:
        print(f"metagan bench: {len(failed)} row(s) failed; first: {failed[0]}", file=sys.stderr)
        return 1
    return 0


def _emit(row: Row, json_path, out) -> None:
    if json_path == "-":
        print(json.dumps(asdict(row)), flush=True)
    elif out is not None:
        out.write(json.dumps(asdict(row)) + "\n")
        out.flush()
    if json_path != "-":
        pct = 100 * row.achieved_gflops / row.matmul_gflops if row.matmul_gflops else 0
        sp = f"{row.speedup_vs_sequential:.2f}" if row.speedup_vs_sequential else "-"
        print(
            f"| {row.algorithm} | {row.tasks} | {row.mode} | {row.sec_per_iter:.4f} ± {row.sec_iqr / 2:.4f} | "
            f"{row.tasks_per_s:.1f} | {row.inner_steps_per_s:.1f} | {row.peak_mem_mb:.0f} | "
            f"{row.gflop_per_iter:.3f} | {row.achieved_gflops:.1f} | {pct:.1f}% | {sp} |",
            flush=True,
        )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"
