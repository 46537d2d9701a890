"""The `finetune` baseline: ONE GAN trained jointly on all meta-train classes (no inner loop,
no meta-learning), then adapted to the K shots with the same inner loop and budget as the
meta-learned algorithms. Each meta-iteration is an ordinary GAN step on the pooled support and
query images of the meta-batch."""

import torch

from metagan.algorithm import Algorithm, MetaResult


class Finetune(Algorithm):
    """Baseline: a GAN trained on all meta-train classes jointly, fine-tuned on the shots."""

    name = "finetune"
    needs_query = False

    def meta_gradients(self, params, batch, noise, engine):
        images = torch.cat([batch.support, batch.query], 1).flatten(0, 1)[
            None
        ]  # (1, T*(K+Q), C, H, W)
        z = noise.outer.flatten(0, 1)[None]  # (1, T*B, Z)
        gg, gd, lg, ld = engine.task_grads(params["g"][None], params["d"][None], images, z)
        ok = bool(
            torch.isfinite(gg).all()
            and torch.isfinite(gd).all()
            and torch.isfinite(lg).all()
            and torch.isfinite(ld).all()
        )
        finite = torch.full((batch.support.shape[0],), ok)
        return MetaResult(
            {"g": gg[0], "d": gd[0]}, finite, {"loss_d": float(ld[0]), "loss_g": float(lg[0])}
        )
