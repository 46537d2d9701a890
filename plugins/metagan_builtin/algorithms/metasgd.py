"""Meta-SGD (Li et al. 2017): meta-learns a per-parameter inner learning rate for every
parameter of G and D alongside the initialisation. Second order by default;
``meta.first_order = true`` keeps the path through the learning rates but not through the
inner gradients (much less memory)."""

import torch

from metagan.algorithm import Algorithm, differentiate_through_adaptation


class MetaSGD(Algorithm):
    """Meta-SGD: learned per-parameter inner learning rates (α for G, β for D)."""

    name = "metasgd"
    meta_gradient_kinds = ("separate", "summed")
    chunks_tasks = True

    def extra_parameters(self, theta_g, theta_d):
        return {
            "lr_g": torch.full_like(theta_g, self.inner.lr_g),
            "lr_d": torch.full_like(theta_d, self.inner.lr_d),
        }

    def inner_lrs(self, params):
        return params["lr_g"], params["lr_d"]

    def meta_gradients(self, params, batch, noise, engine):
        return differentiate_through_adaptation(
            params, batch, noise, engine,
            lr_g=params["lr_g"], lr_d=params["lr_d"], create_graph=not self.meta.first_order,
            summed=self.meta.meta_gradient == "summed", chunk=self.meta.task_chunk,
        )  # fmt: skip
