"""A third-party plugin: the `halfreptile` algorithm (Reptile that moves half-way) and a tiny
`tinymlp` architecture, written against metagan's public API only."""

import torch
from torch import nn

from metagan.algorithm import Algorithm, MetaResult, rows
from metagan.models import GanPair
from metagan.plugins import hookimpl


class HalfReptile(Algorithm):
    """Reptile whose meta-gradient is half of θ − mean θ'."""

    name = "halfreptile"
    needs_query = False

    def meta_gradients(self, params, batch, noise, engine):
        T = batch.support.shape[0]
        g0, d0 = params["g"].detach(), params["d"].detach()
        with torch.no_grad():
            ad = engine.adapt(
                rows(g0, T),
                rows(d0, T),
                batch.support,
                noise.inner,
                lr_g=self.inner.lr_g,
                lr_d=self.inner.lr_d,
            )
        grads = {"g": 0.5 * (g0 - ad.theta_g.mean(0)), "d": 0.5 * (d0 - ad.theta_d.mean(0))}
        return MetaResult(grads, ad.finite, {"inner_loss_d": float(ad.loss_d.mean())})


class _G(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.shape = (cfg.channels, cfg.image_size, cfg.image_size)
        self.fc = nn.Linear(cfg.z_dim, cfg.channels * cfg.image_size**2)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(z.shape[0], *self.shape)


class _D(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.fc = nn.Linear(cfg.channels * cfg.image_size**2, 1)

    def forward(self, x):
        return self.fc(x.flatten(1)).squeeze(-1)


@hookimpl
def metagan_register_algorithms(registry):
    registry.add("halfreptile", HalfReptile)


@hookimpl
def metagan_register_architectures(registry):
    registry.add(
        "tinymlp", lambda cfg: GanPair(_G(cfg), _D(cfg)), description="one linear layer each"
    )
