"""Reptile (Nichol et al. 2018) as in FIGR (Clouâtre & Demers 2019): adapt each task on its
support images, then feed the mean difference θ − θ' to the meta-optimizer (Adam) as if it were
a gradient. Query images are not used."""

import torch

from metagan.algorithm import Algorithm, MetaResult, loss_stats, rows


class Reptile(Algorithm):
    """Reptile/FIGR: θ − mean θ' over tasks fed to Adam as the meta-gradient."""

    name = "reptile"
    needs_query = False

    def meta_gradients(self, params, batch, noise, engine):
        T = batch.support.shape[0]
        g0, d0 = params["g"].detach(), params["d"].detach()
        lr_g, lr_d = self.inner_lrs(params)
        with torch.no_grad():
            ad = engine.adapt(
                rows(g0, T), rows(d0, T), batch.support, noise.inner, lr_g=lr_g, lr_d=lr_d
            )
        grads = {"g": g0 - ad.theta_g.mean(0), "d": d0 - ad.theta_d.mean(0)}
        return MetaResult(grads, ad.finite, loss_stats(ad), theta_g=ad.theta_g)
