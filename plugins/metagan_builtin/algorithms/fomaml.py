"""First-order MAML (Finn et al. 2017, §5.2): the query-loss gradient at the adapted
parameters stands in for the meta-gradient; nothing is differentiated through the inner loop,
so memory does not grow with the number of inner steps."""

import torch

from metagan.algorithm import Algorithm, MetaResult, loss_stats, rows


class FOMAML(Algorithm):
    """First-order MAML: query gradients at the adapted parameters, averaged over tasks."""

    name = "fomaml"

    def meta_gradients(self, params, batch, noise, engine):
        T = batch.support.shape[0]
        lr_g, lr_d = self.inner_lrs(params)
        with torch.no_grad():
            ad = engine.adapt(
                rows(params["g"], T),
                rows(params["d"], T),
                batch.support,
                noise.inner,
                lr_g=lr_g,
                lr_d=lr_d,
            )
        gg, gd, lg, ld = engine.task_grads(
            ad.theta_g, ad.theta_d, batch.query, noise.outer, batch.support
        )
        finite = ad.finite & torch.isfinite(lg) & torch.isfinite(ld)
        finite &= torch.isfinite(gg).all(1) & torch.isfinite(gd).all(1)
        stats = loss_stats(ad, ld, lg)
        grads = {"g": gg.mean(0), "d": gd.mean(0)}
        return MetaResult(grads, finite, stats, theta_g=ad.theta_g)
