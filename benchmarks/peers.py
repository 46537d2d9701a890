"""metagan against its peers, side by side in one process: learn2learn and higher.

Every mode runs whole meta-iterations of the same workload: the same `dcgan` G/D modules
(metagan's own architecture plugin, the same initial weights), the same random support/query
images and latent codes, the non-saturating loss, S alternating inner SGD steps (D, then G
against the updated D), the query losses, the meta-gradient and one Adam step on G and D.

    learn2learn  ``MAML(G).clone()`` / ``MAML(D).clone()`` per task, ``.adapt(loss)`` per step
    higher       ``innerloop_ctx(G, SGD)`` and ``innerloop_ctx(D, SGD)`` per task
    sequential   metagan's per-task reference loop (``metagan bench`` mode)
    batched      metagan's batched engine: all tasks at once through torch.func
    batched-graph  (CUDA only) the batched meta-gradients replayed from a CUDA graph
    MODE-summed  (second order, on request; MODE = batched, sequential or batched-graph)
                 metagan with ``meta.meta_gradient = "summed"``: the peers' meta-gradient (D's
                 inner steps on G(z).detach(), ONE backward of L_D + L_G), identical work to
                 the ``--peer-d-step detach`` peers (``--check`` verifies it)
    MODE-recompute  (on request, also after -summed) with ``inner.recompute = true``
    MODE-chunkN  (on request, with the options above) with ``meta.task_chunk = N``
    MODE-aten    (on request, with the options above) the batched engine with PyTorch's own
                 convolution batching rule instead of metagan's per-task convolution op

Order ``first``: metagan's ``fomaml``; learn2learn ``MAML(first_order=True)``; higher
``track_higher_grads=False`` with the query gradient taken at the fast weights. Order
``second``: metagan's ``maml``; learn2learn ``MAML(first_order=False)``; higher
``track_higher_grads=True``.

The peers are written as their users write them: one ``(L_D + L_G).backward()`` per task on
the query losses (``--peer-outer separate`` takes the two gradients apart instead, as metagan
does), G's forward reused between the D and the G step, and inner gradients taken w.r.t. the
fast weights themselves. In second order this is not metagan's default meta-gradient (see
BENCHMARKS.md) but it is its ``summed`` one. ``--check`` verifies on a small case that both
peers give metagan's meta-gradient: first order with ``--peer-outer separate`` against
``fomaml``, and second order (``--peer-outer sum``, ``--peer-d-step detach``) against
``maml`` with ``meta.meta_gradient = "summed"``.

Timing: all modes are built first, each warmed up, then timed in interleaved rounds (one
iteration of every mode per round, the order rotated each round); the medians are reported.
Peak memory: on CPU each mode runs again in a fresh subprocess (so that no mode inherits
another's heap) and its peak RSS (VmHWM) is read after warm-up + 2 iterations, beside the RSS
it had before its first iteration (``base MB``); on CUDA ``torch.cuda.max_memory_allocated``.

Peers: ``bash benchmarks/install_peers.sh`` (or ``make peers``) installs both into .venv with
``--no-deps``. A peer that is not installed is left out with a one-line message.

Usage: python benchmarks/peers.py [--order first,second] [--tasks 8] [--rounds 5]
                                  [--json rows.jsonl] [--device cpu|cuda] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import replace

import torch

from metagan import plugins
from metagan.bench import (
    Workload,
    _cpu_model,
    _device_name,
    _peak_mb,
    _reset_peak,
    _sync,
    make_iteration,
    workload_data,
    workload_pair,
)
from metagan.inner import InnerConfig
from metagan.ops.conv import aten_convolutions

PEERS = ("higher", "learn2learn")
ALGORITHM = {"first": "fomaml", "second": "maml"}


def peer_available(name: str) -> str | None:
    """None when the peer imports, else a one-line reason."""
    try:
        __import__(name)
    except Exception as e:  # noqa: BLE001 -- any import failure means "not available"
        return f"{name} is not installed ({type(e).__name__}: {e}); bash benchmarks/install_peers.sh installs it"
    return None


class PeerRun:
    """One peer's meta-iteration on the workload (the modules are its own copy)."""

    d_step = "detach"  # --peer-d-step: the D step sees G(z).detach() (the usual GAN loop), or G(z)

    def __init__(self, registries, w: Workload, peer: str, order: str, outer: str):
        self.w, self.peer, self.second = w, peer, order == "second"
        self.outer = outer
        pair = workload_pair(registries, w)
        self.G, self.D = pair.generator, pair.discriminator
        self.loss = registries.losses.get("nonsaturating")
        self.batch, self.noise = workload_data(w)
        inner = InnerConfig(steps=w.inner_steps)
        self.lr_g, self.lr_d = inner.lr_g, inner.lr_d
        self.params = list(self.G.parameters()) + list(self.D.parameters())
        self.opt = torch.optim.Adam(self.params, lr=1e-3, betas=(0.5, 0.999))  # metagan's defaults
        if peer == "learn2learn":
            import learn2learn as l2l

            fo = not self.second
            self.mg = l2l.algorithms.MAML(self.G, lr=self.lr_g, first_order=fo)
            self.md = l2l.algorithms.MAML(self.D, lr=self.lr_d, first_order=fo)
        else:
            self.sgd_g = torch.optim.SGD(self.G.parameters(), lr=self.lr_g)
            self.sgd_d = torch.optim.SGD(self.D.parameters(), lr=self.lr_d)

    def __call__(self):
        self.opt.zero_grad(set_to_none=True)
        self.accumulate()
        self.opt.step()

    def meta_gradients(self) -> dict[str, torch.Tensor]:
        """The flat meta-gradients ``{"g": (P_G,), "d": (P_D,)}`` (for ``--check``)."""
        self.opt.zero_grad(set_to_none=True)
        self.accumulate()
        flat = lambda m: torch.cat([p.grad.reshape(-1) for p in m.parameters()])  # noqa: E731
        return {"g": flat(self.G), "d": flat(self.D)}

    def _outer(self, ld, lg, g_params, d_params):
        """Back-propagate one task's query losses (/T) into the meta-parameters' ``.grad``."""
        T = self.w.tasks
        if self.outer == "sum":  # the users' one backward
            if g_params is None:
                ((ld + lg) / T).backward()
                return
            grads = torch.autograd.grad((ld + lg) / T, g_params + d_params)
        else:  # metagan's: G's meta-gradient from L_G, D's from L_D
            gp = list(self.G.parameters()) if g_params is None else g_params
            dp = list(self.D.parameters()) if d_params is None else d_params
            grads = torch.autograd.grad(lg / T, gp, retain_graph=True) + torch.autograd.grad(
                ld / T, dp
            )
        for p, g in zip(self.params, grads):
            p.grad = g if p.grad is None else p.grad + g

    def _losses(self, t, g, d, step_g, step_d):
        """Task t's S alternating inner steps (the peer's ``step_*(loss)``), then its query
        losses ``(L_D, L_G)``; ``g``/``d`` are the peer's fast modules."""
        b, n, loss = self.batch, self.noise, self.loss
        real = b.support[t]  # (K, C, H, W)
        for s in range(self.w.inner_steps):
            fake = g(n.inner[s, t])  # reused by both steps: G has not changed in between
            step_d(loss.d_loss(d(real), d(fake.detach() if self.d_step == "detach" else fake)))
            step_g(loss.g_loss(d(fake)))
        fake = g(n.outer[t])
        return loss.d_loss(d(b.query[t]), d(fake)), loss.g_loss(d(fake))

    def accumulate(self):
        for t in range(self.w.tasks):
            if self.peer == "learn2learn":
                g, d = self.mg.clone(), self.md.clone()
                ld, lg = self._losses(t, g, d, g.adapt, d.adapt)
                self._outer(ld, lg, None, None)
                continue
            import higher

            kw = dict(copy_initial_weights=False, track_higher_grads=self.second)
            with (
                higher.innerloop_ctx(self.G, self.sgd_g, **kw) as (g, opt_g),
                higher.innerloop_ctx(self.D, self.sgd_d, **kw) as (d, opt_d),
            ):
                ld, lg = self._losses(t, g, d, opt_g.step, opt_d.step)
                if self.second:
                    self._outer(ld, lg, None, None)
                else:  # first order: the query gradient at the fast weights
                    self._outer(ld, lg, list(g.parameters()), list(d.parameters()))


def workload(args, order: str, tasks: int) -> Workload:
    return Workload(
        algorithm=ALGORITHM[order], tasks=tasks, arch="dcgan", image_size=args.image_size,
        shots=args.shots, queries=args.queries, inner_steps=args.inner_steps, z_dim=64,
        width=args.width, device=args.device,
    )  # fmt: skip


def build(registries, w: Workload, mode: str, order: str, outer: str):
    if mode in PEERS:
        return PeerRun(registries, w, mode, order, outer)
    options = {o for o in ("summed", "recompute", "aten") if f"-{o}" in mode}
    chunk = re.search(r"-chunk(\d+)", mode)
    base = re.sub(r"-chunk\d+", "", mode)
    base = base.replace("-summed", "").replace("-recompute", "").replace("-aten", "")
    if base not in ("batched", "sequential", "batched-graph"):
        raise SystemExit(f"peers.py: unknown mode {mode!r}")
    w = replace(w, recompute="recompute" in options, task_chunk=int(chunk[1]) if chunk else 0,
                meta_gradient="summed" if "summed" in options else "separate")  # fmt: skip
    engine = "sequential" if base == "sequential" else "batched"
    it = make_iteration(registries, w, engine, graph=base == "batched-graph")
    if "aten" not in options:
        return it

    def aten_iteration():
        with aten_convolutions():
            it()

    aten_iteration.meta_gradients = it.meta_gradients
    return aten_iteration


def load() -> str:
    with contextlib.suppress(OSError):
        return " ".join(open("/proc/loadavg").read().split()[:3])
    return "?"


def memory_of(args, mode: str, order: str, tasks: int) -> dict:
    """Peak memory of one mode. CPU: a fresh subprocess (its own heap); CUDA: this process."""
    if args.device == "cpu":
        cmd = [sys.executable, __file__, "--memory-of", mode, "--order", order,
               "--tasks", str(tasks), "--peer-outer", args.peer_outer,
               "--peer-d-step", args.peer_d_step,
               "--image-size", str(args.image_size), "--inner-steps", str(args.inner_steps),
               "--shots", str(args.shots), "--queries", str(args.queries),
               "--width", str(args.width), "--threads", str(torch.get_num_threads())]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    registries = plugins.get()
    device = torch.device(args.device)
    torch.cuda.empty_cache()
    _reset_peak(device)
    base = torch.cuda.memory_allocated(device) / 2**20
    it = build(registries, workload(args, order, tasks), mode, order, args.peer_outer)
    for _ in range(3):
        it()
    _sync(device)
    peak = _peak_mb(device)
    del it
    return {"base_mb": base, "peak_mb": peak}


def memory_child(args) -> None:
    registries = plugins.get()
    it = build(registries, workload(args, args.order[0], args.tasks[0]), args.memory_of,
               args.order[0], args.peer_outer)  # fmt: skip
    base = 0.0
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            base = int(line.split()[1]) / 1024
    for _ in range(3):
        it()
    print(json.dumps({"base_mb": base, "peak_mb": _peak_mb(torch.device("cpu"))}))


def check(args) -> int:
    """Each peer's meta-gradient equals metagan's on identical work: first order with
    ``--peer-outer separate`` against ``fomaml``; second order with the users' outer step
    (``sum``) and D step (``detach``) against ``maml`` with ``meta.meta_gradient = "summed"``."""
    registries = plugins.get()
    w = Workload(algorithm="fomaml", tasks=3, arch="dcgan", image_size=28, shots=2, queries=2,
                 inner_steps=2, z_dim=64, width=8, device=args.device)  # fmt: skip
    cases = (("first", "separate", "batched", w),
             ("second", "sum", "batched-summed", replace(w, algorithm="maml")))  # fmt: skip
    bad = 0
    for order, outer, mode, wo in cases:
        for engine in (mode, mode.replace("batched", "sequential")):
            ref = build(registries, wo, engine, order, outer).meta_gradients()
            for peer in PEERS:
                why = peer_available(peer)
                if why:
                    print(f"# {why}")
                    continue
                PeerRun.d_step = "detach"
                got = PeerRun(registries, wo, peer, order, outer).meta_gradients()
                for k in ("g", "d"):
                    err = (got[k] - ref[k]).abs().max().item() / ref[k].abs().max().item()
                    ok = err < 1e-4
                    bad += not ok
                    print(f"{peer} ({order} order, outer {outer}, D step detach) == metagan "
                          f"{engine}, meta-gradient of {k.upper()}: max rel. difference "
                          f"{err:.2e} {'ok' if ok else 'MISMATCH'}")  # fmt: skip
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--order", type=csv, default=["first", "second"])
    p.add_argument("--tasks", type=lambda s: [int(x) for x in csv(s)], default=[8])
    p.add_argument("--inner-steps", type=int, default=5)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--shots", type=int, default=5)
    p.add_argument("--queries", type=int, default=5)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--modes",
        type=csv,
        default=None,
        help="default: the peers, sequential, batched (+ batched-graph on CUDA)",
    )
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--peer-outer", choices=("sum", "separate"), default="sum")
    p.add_argument(
        "--peer-d-step",
        choices=("detach", "keep"),
        default="detach",
        help="the peers' D step on G(z).detach() (the usual GAN loop) or on G(z) (as metagan)",
    )
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH", help="append JSON rows to PATH")
    p.add_argument(
        "--check", action="store_true", help="verify the peers' first-order meta-gradients"
    )
    p.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    PeerRun.d_step = args.peer_d_step
    if args.memory_of:
        memory_child(args)
        return 0
    if args.check:
        return check(args)
    bad = [o for o in args.order if o not in ALGORITHM]
    if bad:
        print(f"peers.py: unknown --order {bad[0]!r}; valid: first, second", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("peers.py: --device cuda but no CUDA GPU is available", file=sys.stderr)
        return 2
    modes = args.modes or [*PEERS, "sequential", "batched"] + (
        ["batched-graph"] if args.device.startswith("cuda") else []
    )
    for peer in PEERS:
        why = peer in modes and peer_available(peer)
        if why:
            print(f"# skipped: {why}")
            modes.remove(peer)
    registries = plugins.get()
    device = torch.device(args.device)
    date = time.strftime("%Y-%m-%d")
    print(f"# peers.py: {_cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {_device_name(device)}, {date}; load {load()}; peers' outer: {args.peer_outer}, D step: {args.peer_d_step}")  # fmt: skip
    out = open(args.json, "a") if args.json else None  # noqa: SIM115
    print(
        "| order | T | mode | s/iter (median) | tasks/s | peak MB | base MB | × faster peer | rounds |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for order in args.order:
            om = [m for m in modes if order == "second" or "-summed" not in m]
            for T in args.tasks:
                w = workload(args, order, T)
                its = {m: build(registries, w, m, order, args.peer_outer) for m in om}
                load_before = load()
                times: dict[str, list[float]] = {m: [] for m in om}
                for m in om:
                    for _ in range(args.warmup):
                        its[m]()
                for r in range(args.rounds):
                    k = r % len(om)
                    for m in om[k:] + om[:k]:
                        _sync(device)
                        t0 = time.perf_counter()
                        its[m]()
                        _sync(device)
                        times[m].append(time.perf_counter() - t0)
                del its
                med = {m: statistics.median(v) for m, v in times.items()}
                peers = [med[m] for m in PEERS if m in med]
                fastest_peer = min(peers) if peers else None
                load_after = load()
                for m in om:
                    mem = {} if args.no_memory else memory_of(args, m, order, T)
                    v = times[m]
                    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [med[m]] * 3
                    row = dict(
                        order=order, algorithm=ALGORITHM[order], mode=m, tasks=T,
                        inner_steps=args.inner_steps, image_size=args.image_size, shots=args.shots,
                        width=args.width, device=args.device, sec_per_iter=med[m], sec_iqr=q[2] - q[0],
                        times=v, tasks_per_s=T / med[m], peak_mb=mem.get("peak_mb"),
                        base_mb=mem.get("base_mb"),
                        vs_faster_peer=fastest_peer / med[m] if fastest_peer else None,
                        peer_outer=args.peer_outer, peer_d_step=args.peer_d_step, rounds=args.rounds, load_before=load_before,
                        load_after=load_after, torch=torch.__version__, threads=torch.get_num_threads(),
                        machine=f"{_cpu_model()} / {_device_name(device)}", date=date,
                    )  # fmt: skip
                    if out:
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                    fmt = lambda x: "-" if x is None else f"{x:.0f}"  # noqa: E731
                    ratio = f"{row['vs_faster_peer']:.2f}" if fastest_peer else "-"
                    print(f"| {order} | {T} | {m} | {med[m]:.4f} ± {(q[2] - q[0]) / 2:.4f} | "
                          f"{T / med[m]:.1f} | {fmt(row['peak_mb'])} | {fmt(row['base_mb'])} | "
                          f"{ratio} | {args.rounds} |", flush=True)  # fmt: skip
    finally:
        if out:
            out.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
