"""The ``memorisation`` plugin: how close the adapted generators' samples stay to their shots,
added to every logged row as ``memorisation``."""

from __future__ import annotations

import torch
from torch import Tensor

from metagan.adaptation import nearest_shot_distance
from metagan.plugins import hookimpl


@hookimpl
def metagan_collect_metrics(trainer, result, batch, noise):
    if result.theta_g is None or result.dropped:
        return None
    memo = memorisation(trainer.session.engine, result.theta_g, batch, noise.outer)
    return None if memo is None else {"memorisation": round(memo, 5)}


def memorisation(engine, theta_g: Tensor, batch, z: Tensor) -> float | None:
    """Median pixel distance from the fakes G_θ'(z) of the meta-batch (theta_g (T, P_G), the
    algorithm's adapted generators; z (T, B, Z), the outer noise) to their task's nearest
    support shot, divided by the same for the task's query images. Costs one generator forward,
    no second adaptation. 0: copies of the shots; about 1: as new as another real drawing.
    None without query images or when a query image equals a shot.
    """
    if batch.query.shape[1] == 0:
        return None
    with torch.no_grad():
        fake = engine.generate(theta_g, z, batch.support)  # (T, B, C, H, W)
    shots = batch.support.flatten(2)  # (T, K, C*H*W)
    d_fake = torch.cat([nearest_shot_distance(f, k) for f, k in zip(fake.flatten(2), shots)])
    d_real = torch.cat([nearest_shot_distance(q, k) for q, k in zip(batch.query.flatten(2), shots)])
    ref = float(d_real.median())
    return float(d_fake.median()) / ref if ref > 0 else None
