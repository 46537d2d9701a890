"""Architecture contract and the flat per-task parameter layout.

An architecture plugin builds a :class:`GanPair` of ordinary ``nn.Module`` objects. metagan never
trains those modules' own parameters in place: it reads their layout once into a
:class:`FlatSpec` and from then on every network's parameters live in ONE flat buffer per network,
``(P,)`` for the shared initialisation and ``(T, P)`` for T tasks' adapted copies. Per-parameter
views are cut out of the buffer on the fly (``narrow`` + ``view``, no copies) and fed to
``torch.func.functional_call``. One flat buffer per network is what lets the inner-step op update
every task and every parameter in a single launch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metagan.errors import ConfigError, MetaganError, PluginError, cause

IMAGE_SIZES = (28, 32, 64, 128)


@dataclass(frozen=True, kw_only=True)
class ArchConfig:
    """What every architecture builder receives."""

    image_size: int = 28
    channels: int = 1
    z_dim: int = 64
    # Base channel count of conv nets / hidden width of MLPs; small so a 2-core CPU trains in minutes.
    width: int = 32

    def __post_init__(self):
        if self.image_size not in IMAGE_SIZES:
            raise ConfigError(
                f"image_size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {self.image_size}"
            )
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        for key in ("z_dim", "width"):
            if getattr(self, key) <= 0:
                raise ConfigError(
                    f"arch {key} must be a positive integer, got {getattr(self, key)}"
                )


@dataclass
class GanPair:
    """A generator ``G(z (B, z_dim)) -> (B, C, H, W)`` in [-1, 1] and a discriminator
    ``D(x (B, C, H, W)) -> (B,)`` logits.

    ``conditional=True``: both also take the task's support images ``shots (K, C, H, W)`` as a
    condition, ``G(z, shots)`` and ``D(x, shots)``; the engines pass them in every call.
    """

    generator: nn.Module
    discriminator: nn.Module
    conditional: bool = False


class FlatSpec:
    """Names, shapes and offsets of a module's parameters inside one flat buffer."""

    def __init__(self, module: nn.Module):
        self.names: list[str] = []
        self.shapes: list[torch.Size] = []
        self.offsets: list[int] = []
        offset = 0
        for name, p in module.named_parameters():
            self.names.append(name)
            self.shapes.append(p.shape)
            self.offsets.append(offset)
            offset += p.numel()
        self.numels = [math.prod(s) for s in self.shapes]
        self.numel = offset
        if self.numel == 0:
            raise ConfigError(f"{type(module).__name__} has no parameters to meta-learn")

    def flatten(self, module: nn.Module) -> Tensor:
        """The module's current parameters as one ``(P,)`` tensor (a copy)."""
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """Views ``{name: (..., *shape)}`` into ``flat (..., P)``; works under vmap.

        One ``split`` rather than a ``narrow`` per parameter: the backward of ``split`` is a single
        ``cat`` of the parameter gradients, whereas each ``narrow`` backward would materialise a
        zero-filled ``(..., P)`` buffer and add into it (seen: 20% of a CPU meta-iteration).
        """
        lead = flat.shape[:-1]
        parts = flat.split(self.numels, dim=-1)
        return {
            name: part.view(*lead, *shape)
            for name, shape, part in zip(self.names, self.shapes, parts)
        }

    def segments(self) -> list[tuple[str, int, int]]:
        """``(name, offset, numel)`` per parameter."""
        return [(n, o, math.prod(s)) for n, s, o in zip(self.names, self.shapes, self.offsets)]


class FunctionalNet:
    """A stateless view of a module: ``net(flat_params (P,), *inputs)`` via functional_call."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.spec = FlatSpec(module)
        self.buffers = dict(module.named_buffers())

    def __call__(self, flat: Tensor, *inputs: Tensor) -> Tensor:
        params = self.spec.unflatten(flat)
        if self.buffers:
            params = {**self.buffers, **params}
        return functional_call(self.module, params, inputs)

    def init_flat(self) -> Tensor:
        return self.spec.flatten(self.module)


def check_vmap_safe(module: nn.Module, kind: str, arch: str) -> None:
    """Refuse modules whose forward would update running statistics across tasks."""
    for name, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            raise ConfigError(
                f"architecture {arch!r}: {kind} layer {name!r} is a {type(m).__name__} with running "
                "statistics, which leak across tasks; use GroupNorm/LayerNorm or "
                "track_running_stats=False"
            )


def check_pair(build, cfg: ArchConfig, arch: str, plugin: str) -> GanPair:
    """Build an architecture and run the cheap part of the conformance checks on one tiny
    batch (output types, shapes, range, finiteness), so that a wrong network is refused in one
    line naming its plugin instead of training silently. The global RNG is left as it was."""
    who = f"architecture {arch!r} (plugin {plugin!r})"
    try:
        pair = build(cfg)
    except MetaganError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin's fault, reported as such
        raise PluginError(f"{who} failed to build: {cause(exc)}") from None
    nets = (getattr(pair, "generator", None), getattr(pair, "discriminator", None))
    if not isinstance(pair, GanPair) or not all(isinstance(n, nn.Module) for n in nets):
        raise PluginError(
            f"{who} returned {type(pair).__name__}; it must return a GanPair of two nn.Modules"
        )
    B, size = 2, (cfg.channels, cfg.image_size, cfg.image_size)
    gen = torch.Generator().manual_seed(0)
    cond = (torch.rand(3, *size, generator=gen) * 2 - 1,) if pair.conditional else ()
    z = torch.randn(B, cfg.z_dim, generator=gen)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        x = _run(who, "generator", pair.generator, z, *cond)
        _expect(who, "generator", x, (B, *size), f"for z of shape {(B, cfg.z_dim)}")
        if not bool(torch.isfinite(x).all()) or float(x.abs().max()) > 1 + 1e-5:
            raise PluginError(
                f"{who}: the generator's output must be finite and in [-1, 1] (end with tanh)"
            )
        logits = _run(who, "discriminator", pair.discriminator, x, *cond)
        _expect(
            who,
            "discriminator",
            logits,
            (B,),
            f"(one logit per image) for images of shape {tuple(x.shape)}",
        )
        if not bool(torch.isfinite(logits).all()):
            raise PluginError(f"{who}: the discriminator's logits are not finite")
    return pair


def _run(who: str, kind: str, net: nn.Module, *inputs: Tensor) -> Tensor:
    try:
        return net(*inputs)
    except MetaganError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PluginError(
            f"{who}: the {kind} fails on a batch of {inputs[0].shape[0]}: {cause(exc)}"
        ) from None


def _expect(who: str, kind: str, out, shape: tuple, context: str) -> None:
    got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
    if got != shape:
        raise PluginError(f"{who}: the {kind} returns {got}, it must return {shape} {context}")
