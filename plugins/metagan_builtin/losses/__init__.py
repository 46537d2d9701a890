"""Built-in GAN losses: ``nonsaturating`` (the default) and ``hinge``.

This plugin is essential (it cannot be disabled): every run needs a loss.
"""

import torch.nn.functional as F

from metagan.losses import GanLoss
from metagan.plugins import hookimpl

# Non-saturating GAN (Goodfellow et al. 2014): D minimises binary cross-entropy,
# G minimises -log D(G(z)) = softplus(-logit).
NONSATURATING = GanLoss(
    d_loss=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
    g_loss=lambda fake: F.softplus(-fake).mean(),
    description="D: binary cross-entropy; G: -log D(G(z))",
)

# Hinge loss (Lim & Ye 2017; Miyato et al. 2018).
HINGE = GanLoss(
    d_loss=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
    g_loss=lambda fake: -fake.mean(),
    description="D: hinge; G: -D(G(z))",
)


@hookimpl
def metagan_register_losses(registry):
    registry.add("nonsaturating", NONSATURATING, description=NONSATURATING.description)
    registry.add("hinge", HINGE, description=HINGE.description)
