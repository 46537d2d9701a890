"""The `finetune` baseline: ONE GAN trained jointly on all meta-train classes (no inner loop,
no meta-learning), then adapted to the K shots with the same inner loop and budget as the
meta-learned algorithms. Each meta-iteration is an ordinary GAN step on the pooled support and
query images of the meta-batch.

A conditional architecture cannot pool: its condition is one class's shots. There every class
of the meta-batch is its own task (its support and query images the reals, its support the
condition), all with the same shared parameters, and the per-class gradients are averaged.
"""

import torch

from metagan.algorithm import Algorithm, MetaResult, rows


class Finetune(Algorithm):
    """Baseline: a GAN trained on all meta-train classes jointly, fine-tuned on the shots."""

    name = "finetune"
    needs_query = False

    def meta_gradients(self, params, batch, noise, engine):
        images = torch.cat([batch.support, batch.query], 1)  # (T, K+Q, C, H, W)
        if engine.conditional:  # one task per class, shared parameters, gradients averaged
            T = images.shape[0]
            g, d = rows(params["g"], T), rows(params["d"], T)
            out = engine.task_grads(g, d, images, noise.outer, batch.support)
            gg, gd, lg, ld = (x.mean(0, keepdim=True) for x in out)
        else:  # one pooled task: (1, T*(K+Q), C, H, W), z (1, T*B, Z)
            z = noise.outer.flatten(0, 1)[None]
            gg, gd, lg, ld = engine.task_grads(
                params["g"][None], params["d"][None], images.flatten(0, 1)[None], z
            )
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
