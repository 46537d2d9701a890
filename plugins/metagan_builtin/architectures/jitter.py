"""``jitter``: a generator whose family contains the free transforms, and that starts as them.

G picks one of the task's shots per sample (from the last entry of z, as ``dagan`` does) and
transforms it with :func:`metagan.transforms.deform`: stroke width, then an affine map plus a
smooth elastic field, in one resampling. The parameters are the free jitter's, drawn from
uniforms ``u = Φ(z[:, :n])`` (the standard normal CDF of the first ``n`` entries of z, so
uniform when z is N(0, 1)) at the strengths :data:`FREE`, then

- scaled by learned per-part gains (affine, elastic, stroke; ``exp`` of parameters that start
  at 0): how much of each transform this class's drawings take;
- corrected by a learned map of z and the shot (an encoder of the shot joined with z, its last
  layer starting at exactly zero): which transform suits this drawing.

Untrained, ``G(z, shots)`` IS the free jitter ``Jitter(**FREE)`` of the chosen shot with the
noise ``u`` (tests/test_conditional.py): a meta-learned G starts where free augmentation is
and is judged on what it adds. Elastic control displacements are clamped below 3.4 px at 28 px
(the field cannot fold the drawing) and stroke changes to [-1, 1]. The paper value (for stroke
width and the uncovered area) is read from the shots' top rows.

D is ``dagan``'s pair discriminator judging DiffAugment-style augmented images (Zhao et al.
2020): every image it judges, real or fake, is translated by up to 1/8 of the side and has a
square of 1/4 of the side cut out (set to 0), so that D cannot win by memorising the few real
drawings of a task. The augmentation's randomness is a fixed function of the image's content
(a sine hash of its rounded pixel sum), so the inner step stays a pure function under ``vmap``.
Combining the K shots (registering them to each other) is not part of it yet.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagan.errors import ConfigError
from metagan.models import ArchConfig, GanPair
from metagan.registration import CONTROL_BOUND
from metagan.transforms import ELASTIC_GRID, Jitter, affine_grid, deform

from ._shots import ENCODER_LEVELS, PairDiscriminator, _conv_norm
from .dagan import one_shot

# the free strengths G starts from (metagan.eval.free's defaults: affine 1 = rotation ±10°,
# scale 0.9-1.1, shift ±2 px; elastic 2 px; stroke 0.5)
FREE = {"affine": 1.0, "elastic": 2.0, "stroke": 0.5}


def uniforms(z: Tensor, n: int) -> Tensor:
    """The free jitter's noise from z: Φ(z[:, :n]) in (0, 1), (B, n)."""
    return (0.5 * (1 + torch.erf(z[:, :n] / 2**0.5))).clamp(1e-6, 1 - 1e-6)


class JitterGenerator(nn.Module):
    arch = "jitter"
    extra_noise = 0  # entries of z a subclass reads after the jitter's (before the shot's)

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.free = Jitter(**FREE)
        self.n = self.free.noise
        need = self.n + self.extra_noise + 1
        if cfg.z_dim < need:
            raise ConfigError(
                f"architecture {self.arch!r} draws {need - 1} transform parameters and a shot "
                f"from z: model.z_dim must be >= {need}, got {cfg.z_dim}"
            )
        self.size = cfg.image_size
        levels = ENCODER_LEVELS[cfg.image_size]
        ch = [cfg.width * 2**i for i in range(levels)]
        self.down = nn.Sequential(
            *(_conv_norm(c_in, c, 4, 2, nn.LeakyReLU(0.2)) for c_in, c in zip([cfg.channels, *ch], ch)),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        hidden = 4 * cfg.width
        self.head = nn.Sequential(
            nn.Linear(4 * ch[-1] + cfg.z_dim - 1, hidden), nn.ReLU(), nn.Linear(hidden, 6 + 2 * ELASTIC_GRID**2 + 1)
        )  # fmt: skip
        with torch.no_grad():  # the correction starts at exactly zero: G is the free jitter
            self.head[-1].weight.zero_()
            self.head[-1].bias.zero_()
        self.gain = nn.Parameter(torch.zeros(3))  # log-gains of affine, elastic, stroke

    def forward(self, z: Tensor, shots: Tensor) -> Tensor:  # (B, Z), (K, C, H, W) -> (B, C, H, W)
        w = one_shot(z, shots.shape[0])  # (B, K) one-hot
        shot = torch.einsum("bk,kchw->bchw", w, shots)
        theta, control, stroke = self.jitter(z, shot)
        paper = torch.where(shots[:, :, 0].mean() < 0, -1.0, 1.0).to(z)  # top rows: paper
        return deform(shot, theta=theta, control=control, stroke=stroke, background=paper)

    def jitter(self, z: Tensor, shot: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The learned jitter of each sample's shot (B, C, H, W): ``theta`` (B, 2, 3),
        ``control`` (B, 2, G, G), ``stroke`` (B,), the arguments of :func:`deform`."""
        B, g = z.shape[0], ELASTIC_GRID
        p = self.free.params(uniforms(z, self.n), self.size)
        delta = self.head(torch.cat([self.down(shot), z[:, :-1]], 1))  # (B, 6 + 2g² + 1)
        gain = torch.exp(self.gain)
        eye = torch.eye(2, 3, dtype=z.dtype, device=z.device)
        theta = eye + gain[0] * (p["theta"] - eye) + delta[:, :6].view(B, 2, 3)
        control = (gain[1] * p["control"] + delta[:, 6 : 6 + 2 * g * g].view(B, 2, g, g)).clamp(
            -CONTROL_BOUND, CONTROL_BOUND
        )
        stroke = (gain[2] * p["stroke"] + delta[:, -1]).clamp(-1.0, 1.0)
        return theta, control, stroke


def content_uniforms(x: Tensor, n: int) -> Tensor:
    """(B, C, H, W) -> (B, n) numbers in (0, 1), a fixed function of each image's pixel sum
    rounded to 1/4 (so that rounding noise between engines cannot change them; the hash
    amplifies any difference 10^5-fold). No gradient flows through them."""
    seed = torch.round(x.detach().flatten(1).sum(1, keepdim=True) * 4) / 4  # (B, 1)
    k = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    v = torch.sin(seed * 12.9898 + k * 78.233) * 43758.5453
    return (v - torch.floor(v)).clamp(1e-6, 1 - 1e-6)


def diff_augment(x: Tensor) -> Tensor:
    """Translation by up to 1/8 of the side (edges repeated) and a cutout of 1/4 of the side."""
    B, _, H, W = x.shape
    u = content_uniforms(x, 4)
    eye = torch.eye(2, 2, dtype=x.dtype, device=x.device).expand(B, 2, 2)
    shift = (2 * u[:, :2, None] - 1) * 0.25  # (B, 2, 1) grid units: 1/8 of the side
    grid = affine_grid(torch.cat([eye, shift], 2), H, W)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    rows = torch.arange(H, dtype=x.dtype, device=x.device)
    cols = torch.arange(W, dtype=x.dtype, device=x.device)
    cy, cx = u[:, 2:3] * H, u[:, 3:4] * W  # (B, 1)
    inside_r = ((rows[None] - cy).abs() < H / 8).to(x.dtype)  # (B, H)
    inside_c = ((cols[None] - cx).abs() < W / 8).to(x.dtype)  # (B, W)
    return x * (1 - inside_r[:, None, :, None] * inside_c[:, None, None, :])


def build_jitter(cfg: ArchConfig) -> GanPair:
    return GanPair(
        JitterGenerator(cfg), PairDiscriminator(cfg, augment=diff_augment), conditional=True
    )
