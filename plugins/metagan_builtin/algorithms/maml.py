"""MAML (Finn et al. 2017), second order, for a generator/discriminator pair.

Differentiates the query losses through every alternating inner D and G step, including the
inner gradients themselves (``create_graph=True``), back to the shared initialisation.
``meta.meta_gradient = "summed"`` gives the meta-gradient learn2learn/higher users compute
(D's inner steps on G(z).detach(), one backward of L_D + L_G) instead of the separate ones.
"""

from metagan.algorithm import Algorithm, differentiate_through_adaptation


class MAML(Algorithm):
    """Second-order MAML: meta-gradients through the alternating inner D/G steps."""

    name = "maml"
    meta_gradient_kinds = ("separate", "summed")
    chunks_tasks = True

    def meta_gradients(self, params, batch, noise, engine):
        lr_g, lr_d = self.inner_lrs(params)
        return differentiate_through_adaptation(
            params, batch, noise, engine, lr_g=lr_g, lr_d=lr_d, create_graph=True,
            summed=self.meta.meta_gradient == "summed", chunk=self.meta.task_chunk,
        )  # fmt: skip
