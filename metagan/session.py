"""Everything a command builds from a :class:`~metagan.config.Config`: the plugins' objects,
the engine, the algorithm, the data, and fresh or loaded meta-parameters."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch
from torch import Tensor

from metagan import checkpoint, memory, ops, plugins
from metagan.algorithm import Algorithm, check_query
from metagan.config import Config
from metagan.data.tasks import ImageCache, TaskSampler, split_classes
from metagan.errors import ConfigError, MetaganError, PluginError, cause
from metagan.inner import BatchedEngine, Engine
from metagan.models import ArchConfig, check_pair, check_vmap_safe
from metagan.sequential import SequentialEngine

# run.engine: what training runs (batched) and the per-task reference (metagan/sequential.py).
ENGINES = {"batched": BatchedEngine, "sequential": SequentialEngine}


class Session:
    """The objects behind one run, built from a config and the plugin registries."""

    def __init__(
        self, cfg: Config, registries: plugins.Registries | None = None, *, check_memory=True
    ):
        self.cfg = cfg
        self.registries = registries or plugins.get()
        regs = self.registries
        self.algorithm_cls = regs.algorithms.get(cfg.meta.algorithm)
        build = regs.architectures.get(cfg.model.arch)
        loss = regs.losses.get(cfg.model.loss)
        self.dataset_cls = regs.datasets.get(cfg.data.dataset)
        self.device = _device(cfg.run.device)
        # data.channels = 0 becomes the dataset's own number (the dataset is opened for it)
        self.cfg = cfg = self.with_data(cfg, self._resolved_data(cfg.data))
        self.arch_cfg = ArchConfig(
            image_size=cfg.data.image_size,
            channels=cfg.data.channels,
            z_dim=cfg.model.z_dim,
            width=cfg.model.width,
        )
        # sizes that cannot fit are refused before anything is allocated
        self.footprint = memory.footprint(build, self.arch_cfg)
        self._build = build
        if check_memory:
            memory.check_training(self.footprint, cfg, self.device)
        torch.manual_seed(cfg.run.seed)  # the initialisation depends on the seed only
        plugin = regs.architectures.entry(cfg.model.arch).plugin
        pair = check_pair(build, self.arch_cfg, cfg.model.arch, plugin)
        pair.generator.to(self.device)
        pair.discriminator.to(self.device)
        check_vmap_safe(pair.generator, "generator", cfg.model.arch)
        check_vmap_safe(pair.discriminator, "discriminator", cfg.model.arch)
        self.engine: Engine = ENGINES[cfg.run.engine](pair, loss, cfg.inner)
        self.algorithm: Algorithm = self.algorithm_cls(meta=cfg.meta, inner=cfg.inner)
        self.algorithm.name = cfg.meta.algorithm
        self.algorithm.plugin = regs.algorithms.entry(cfg.meta.algorithm).plugin
        check_query(self.algorithm, cfg.data.queries)

    def _resolved_data(self, data):
        """``data`` with its channels settled (0: the dataset's ``channels``) and ``invert``
        off for colour (colour images are never inverted)."""
        channels = data.channels
        if channels == 0:
            channels = getattr(self.dataset, "channels", 1)
            if isinstance(channels, bool) or channels not in (1, 3):
                raise PluginError(
                    f"{self._dataset_who} declares channels={channels!r}; a dataset's channels "
                    "must be 1 (grayscale) or 3 (RGB)"
                )
        return dataclasses.replace(data, channels=channels, invert=data.invert and channels == 1)

    def with_data(self, cfg: Config, data=None) -> Config:
        """``cfg`` with this session's data section (its channels settled): what a run's
        checkpoint records, so that adapting never has to open the dataset."""
        return dataclasses.replace(cfg, data=self.cfg.data if data is None else data)

    # -- meta-parameters -------------------------------------------------------------------
    def init_params(self) -> dict[str, Tensor]:
        g = self.engine.G.init_flat()
        d = self.engine.D.init_flat()
        params = {"g": g, "d": d, **self.algorithm.extra_parameters(g, d)}
        return {
            k: torch.nn.Parameter(v.detach().clone().to(self.device)) for k, v in params.items()
        }

    def load_params(self, path: str | Path, ckpt: dict) -> dict[str, Tensor]:
        fresh = self.init_params()
        checkpoint.check_params(path, ckpt, fresh, self.cfg.model.arch)
        return {
            k: torch.nn.Parameter(ckpt["params"][k].to(self.device, fresh[k].dtype)) for k in fresh
        }

    # -- data ------------------------------------------------------------------------------
    @functools.cached_property
    def dataset(self):
        d = self.cfg.data
        try:
            return self.dataset_cls(root=d.root or None, seed=d.seed)
        except MetaganError:
            raise
        except Exception as exc:  # noqa: BLE001 - the dataset plugin's fault, named
            raise PluginError(f"{self._dataset_who} failed to open: {cause(exc)}") from None

    @functools.cached_property
    def cache(self) -> ImageCache:
        return ImageCache(
            self.dataset,
            image_size=self.cfg.data.image_size,
            invert=self.cfg.data.invert,
            channels=self.cfg.data.channels,
            who=self._dataset_who,
        )

    @property
    def _dataset_who(self) -> str:
        name = self.cfg.data.dataset
        return f"dataset {name!r} (plugin {self.registries.datasets.entry(name).plugin!r})"

    @functools.cached_property
    def split(self) -> tuple[list[int], list[int]]:
        d = self.cfg.data
        return split_classes(
            self.dataset,
            test_fraction=d.test_fraction,
            test_groups=d.test_groups or None,
            seed=d.seed,
        )

    def sampler(self, which: str, *, queries: int | None = None) -> TaskSampler:
        d = self.cfg.data
        classes = self.split[0] if which == "train" else self.split[1]
        seed = self.cfg.run.seed if which == "train" else self.cfg.run.seed + 1
        q = d.queries if queries is None else queries
        augment = d.task_augment if which == "train" else "none"
        return TaskSampler(
            self.cache, classes, shots=d.shots, queries=q, seed=seed, augment=augment
        )

    def provenance(self) -> dict[str, dict[str, str]]:
        """Which plugin (distribution, version) made each named component: kept in checkpoints
        so that loading one without that plugin names it (:func:`checkpoint.check_plugins`)."""
        c, r = self.cfg, self.registries
        out = {}
        for kind, reg, name in (
            ("algorithm", r.algorithms, c.meta.algorithm),
            ("architecture", r.architectures, c.model.arch),
            ("dataset", r.datasets, c.data.dataset),
            ("loss", r.losses, c.model.loss),
        ):
            e = reg.entry(name)
            out[kind] = {
                "name": name,
                "plugin": e.plugin,
                "dist": e.dist or "",
                "version": e.version or "",
            }
        return out

    def header(self) -> list[str]:
        """The log header: versions, plugins and the op backend in use."""
        from metagan._version import __version__

        regs = self.registries
        plugs = ", ".join(f"{p.name}-{p.version or '?'}" for p in regs.plugins if p.error is None)
        c = self.cfg
        return [
            f"metagan {__version__}, torch {torch.__version__}, device {self.device}",
            f"plugins: {plugs}"
            + (f" (disabled: {', '.join(regs.disabled)})" if regs.disabled else ""),
            f"ops backend: {ops.backend_info()}",
            f"engine: {c.run.engine}; algorithm: {c.meta.algorithm}; arch: {c.model.arch} ({self.engine.G.spec.numel} + "
            f"{self.engine.D.spec.numel} params); dataset: {c.data.dataset}; loss: {c.model.loss}",
            f"images: {c.data.channels} x {c.data.image_size} x {c.data.image_size}"
            + ("" if c.data.channels == 3 else f", invert {str(c.data.invert).lower()}"),
            *filter(None, [self.estimate()]),
        ]

    def estimate(self) -> str | None:
        """Memory and time of one meta-iteration, estimated without allocating (metagan.memory)."""
        flops = memory.iteration_flops(self._build, self.arch_cfg, self.cfg)
        return memory.estimate_line(self.footprint, flops, self.cfg, self.device)


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"run.device {name!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "run.device is cuda but no CUDA GPU is available to this torch; use run.device=cpu"
        )
    return dev
