"""Refusing sizes that cannot fit in memory, before allocating them.

A config with ``model.width = 100000`` or ``adapt --num 10**9`` should not start allocating
and die minutes later (or take the machine down with it): the commands compare a lower-bound
estimate of what they will need with the memory the device has free, and refuse in one line
with both numbers. The estimates are lower bounds (the buffers that must exist, not every
activation), so a size that is refused would certainly not have fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metagan.errors import ConfigError

GIB = 2**30


def available_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory of ``device`` in bytes (RAM plus free swap for the CPU); None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    try:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        return fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        return None


def check_fits(need: float, device, what: str, hint: str) -> None:
    """A one-line ConfigError when ``need`` bytes exceed the device's free memory."""
    have = available_bytes(device)
    if have is not None and need > have:
        raise ConfigError(
            f"{what} needs at least {need / GIB:.1f} GiB but {torch.device(device)} has "
            f"{have / GIB:.1f} GiB free; {hint}"
        )


@dataclass(frozen=True)
class Footprint:
    """An architecture's sizes in elements: parameters, and the outputs of its layers for one
    sample (the activations a forward keeps for the backward; ``largest_g``: G's largest)."""

    params_g: int
    params_d: int
    act_g: int
    act_d: int
    largest_g: int


def footprint(build, arch_cfg) -> Footprint | None:
    """Build the architecture on the meta device (nothing is allocated) and run G and D on one
    sample; None when the builder or a forward does not work there (the real build then
    reports the plugin's own error)."""
    try:
        with torch.device("meta"):
            pair = build(arch_cfg)
            size = (1, arch_cfg.channels, arch_cfg.image_size, arch_cfg.image_size)
            cond = (torch.empty(1, *size[1:]),) if getattr(pair, "conditional", False) else ()
            acts = []
            hooks = [
                m.register_forward_hook(lambda m, i, o: acts.append(_numel(o)))
                for net in (pair.generator, pair.discriminator)
                for m in net.modules()
                if next(m.children(), None) is None  # leaves: a container repeats its last output
            ]
            try:
                pair.generator(torch.empty(1, arch_cfg.z_dim), *cond)
                n_g, largest = sum(acts), max(acts, default=0)
                pair.discriminator(torch.empty(size), *cond)
            finally:
                for h in hooks:
                    h.remove()
        return Footprint(
            sum(p.numel() for p in pair.generator.parameters()),
            sum(p.numel() for p in pair.discriminator.parameters()),
            n_g,
            sum(acts) - n_g,
            largest,
        )
    except Exception:  # noqa: BLE001 - the real build reports the plugin's error
        return None


def _numel(out) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    if isinstance(out, (tuple, list)):
        return sum(_numel(o) for o in out)
    return 0


def training_bytes(fp: Footprint, cfg) -> int:
    """A lower bound on one meta-iteration's memory: per-task parameter copies, gradients and
    the meta-optimizer's state, the images, and one forward's activations per sample."""
    T, K, Q = cfg.meta.tasks, cfg.data.shots, cfg.data.queries
    B = cfg.inner.fake_batch or K
    pixels = max(cfg.data.channels, 1) * cfg.data.image_size**2
    elements = (
        (fp.params_g + fp.params_d) * (3 * T + 4)  # θ rows, their gradients, updated rows; Adam
        + T * (K + Q + B) * pixels
        + T * B * (fp.act_g + fp.act_d)
        + T * (K + Q) * fp.act_d
    )
    return 4 * elements


def iteration_flops(build, arch_cfg, cfg) -> int | None:
    """About how many FLOPs one meta-iteration takes: G and D forwards at the run's shapes,
    counted on the meta device (nothing is allocated), times 3 for their backward, for every
    inner step (a D step and a G step) and the outer losses, for every task. A first-order
    count (second-order algorithms add about as much again); None where it cannot be counted."""
    from torch.utils.flop_counter import FlopCounterMode

    T, K, Q, S = cfg.meta.tasks, cfg.data.shots, cfg.data.queries, cfg.inner.steps
    B = cfg.inner.fake_batch or K
    img = (arch_cfg.channels, arch_cfg.image_size, arch_cfg.image_size)
    try:
        with torch.device("meta"):
            pair = build(arch_cfg)
            cond = lambda: (torch.empty(K, *img),) if pair.conditional else ()  # noqa: E731

            def count(fn) -> int:
                with FlopCounterMode(display=False) as counter:
                    fn()
                return counter.get_total_flops()

            g = count(lambda: pair.generator(torch.empty(B, arch_cfg.z_dim), *cond()))
            d = {n: count(lambda n=n: pair.discriminator(torch.empty(n, *img), *cond()))
                 for n in {B, K, max(Q, 1)}}  # fmt: skip
    except Exception:  # noqa: BLE001 - an estimate only; the real build reports errors
        return None
    inner = (g + d[B]) + (d[B] + d[K]) + (g + d[B])  # D step (fakes, reals), G step
    outer = g + 2 * d[B] + d[max(Q, 1)]
    return 3 * T * (S * inner + outer)


def matmul_gflops(n: int = 384, repeats: int = 5) -> float:
    """This CPU's fp32 matmul rate with torch's threads, measured in a few milliseconds (on a
    loaded machine it reads what this process gets now, so the time estimate is rough)."""
    import time

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / max(time.perf_counter() - t0, 1e-9) / 1e9


def estimate_line(fp: Footprint | None, flops: int | None, cfg, device) -> str | None:
    """The log header's estimate, printed before the first meta-iteration allocates anything:
    memory (a lower bound) and FLOPs, and on the CPU a rough time at its matmul rate."""
    if fp is None:
        return None
    text = f"estimate per meta-iteration: >= {training_bytes(fp, cfg) / GIB:.2f} GiB"
    if flops:
        text += f", about {flops / 1e9:.1f} GFLOP (first order)"
        if torch.device(device).type == "cpu":
            rate = matmul_gflops()
            text += f", ~{flops / 1e9 / rate:.0f} s at the matmul rate measured now ({rate:.0f} GFLOP/s)"
    return text


def check_training(fp: Footprint | None, cfg, device) -> None:
    """Refuse a config whose meta-batch cannot fit (:func:`training_bytes`)."""
    if fp is None:
        return
    T = cfg.meta.tasks
    B = cfg.inner.fake_batch or cfg.data.shots
    check_fits(
        training_bytes(fp, cfg), device,
        f"training (model.width={cfg.model.width}, model.z_dim={cfg.model.z_dim}: "
        f"{fp.params_g + fp.params_d:,} parameters; meta.tasks={T}, {B} fakes per task)",
        "lower model.width, model.z_dim, meta.tasks or inner.fake_batch",
    )  # fmt: skip


def check_sampling(fp: Footprint | None, tasks: int, num: int, cfg, device, flag="--num") -> None:
    """Refuse drawing ``num`` samples for each of ``tasks`` that cannot fit (G's largest layer
    output for every sample at once, and the samples)."""
    if fp is None:
        return
    pixels = max(cfg.data.channels, 1) * cfg.data.image_size**2
    elements = tasks * num * (fp.largest_g + pixels + cfg.model.z_dim)
    check_fits(4 * elements, device, f"{flag} {num} for {tasks} class(es)", f"lower {flag}")
