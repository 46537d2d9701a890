"""ANIL for GANs (Raghu et al. 2020, "almost no inner loop"): the inner loop adapts only the
last layer of G and D; the body is meta-learned but frozen during adaptation.

Written against docs/plugins.md only: the parameter layout comes from
``engine.G.spec.segments()``, the frozen layers get an inner rate of 0 through ``inner_lrs``
(which takes the engine), and the meta-gradient is first-order.
"""

import torch

from metagan.algorithm import Algorithm, MetaResult, loss_stats, rows
from metagan.plugins import hookimpl


def head_mask(spec) -> torch.Tensor:
    """(P,) 1.0 over the parameters of the network's last layer, 0.0 elsewhere."""
    segments = spec.segments()  # [(name, offset, numel), ...] in the flat buffer's order
    last_layer = segments[-1][0].rsplit(".", 1)[0]  # e.g. "net.6" of "net.6.bias"
    mask = torch.zeros(spec.numel)
    for name, offset, numel in segments:
        if name.rsplit(".", 1)[0] == last_layer:
            mask[offset : offset + numel] = 1.0
    return mask


class ANIL(Algorithm):
    """First-order MAML whose inner loop adapts only the last layer of G and D."""

    name = "anil"

    def inner_lrs(self, params, engine=None):
        mask_g = head_mask(engine.G.spec).to(params["g"])
        mask_d = head_mask(engine.D.spec).to(params["d"])
        return self.inner.lr_g * mask_g, self.inner.lr_d * mask_d

    def meta_gradients(self, params, batch, noise, engine):
        T = batch.support.shape[0]  # batch.support: (T, K, C, H, W); batch.query: (T, Q, C, H, W)
        lr_g, lr_d = self.inner_lrs(params, engine)
        with torch.no_grad():
            ad = engine.adapt(
                rows(params["g"], T), rows(params["d"], T), batch.support, noise.inner,
                lr_g=lr_g, lr_d=lr_d,
            )  # fmt: skip
        gg, gd, lg, ld = engine.task_grads(
            ad.theta_g, ad.theta_d, batch.query, noise.outer, batch.support
        )
        finite = ad.finite & torch.isfinite(lg) & torch.isfinite(ld)
        grads = {"g": gg.mean(0), "d": gd.mean(0)}
        return MetaResult(grads, finite, loss_stats(ad, ld, lg), theta_g=ad.theta_g)


@hookimpl
def metagan_register_algorithms(registry):
    registry.add("anil", ANIL)
