"""The `scratch` baseline: a freshly initialised GAN trained only on the K shots, with the same
inner loop and budget as the meta-learned algorithms. There is nothing to meta-train: `metagan
train --algorithm scratch` saves the random initialisation so adapt/sample/eval treat it like
any other checkpoint."""

from metagan.algorithm import Algorithm


class Scratch(Algorithm):
    """Baseline: a fresh GAN trained on the K shots only (nothing is meta-trained)."""

    name = "scratch"
    needs_query = False
    trains = False

    def meta_gradients(self, params, batch, noise, engine):
        raise RuntimeError("the scratch baseline has no meta-gradients; the trainer never asks")
