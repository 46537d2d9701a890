"""Free transformations of drawings: affine jitter, smooth elastic deformation, stroke width.

What a user gets without any GAN, and the family the ``jitter`` generator starts from. Every
transform is a pure function of the images and explicit parameters, and :class:`Jitter` draws
those parameters from uniform noise scaled by a *strength* (0 is the identity):

- ``affine`` (strength a): rotation ±10a°, scale 1 ± 0.1a, shift ±2a px at 28 px (a = 1 is
  ``metagan eval``'s classic ``affine`` row, unchanged);
- ``elastic`` (strength e, px at 28 px): a random free-form deformation, the displacements of a
  ``ELASTIC_GRID`` x ``ELASTIC_GRID`` control grid drawn uniformly in ±e px and interpolated
  bicubically over the image (Simard et al.'s smooth random field, with the smoothing done by
  the spline). Neighbouring control points are 1/4 of the side apart (7 px at 28 px), so for
  e < 3.5 px the field cannot fold the drawing over itself;
- ``stroke`` (strength s in [0, 1]): stroke width, a blend of the drawing with its 3 x 3
  dilation (t > 0: thicker) or erosion (t < 0: thinner), t drawn uniformly in [-s, s].

The stroke change is applied first, then the affine map and the elastic field as ONE
resampling (the image is interpolated once, not blurred twice). The area a transform uncovers
is filled with the paper (background) value: -1 for inverted images (strokes +1 on -1), +1
otherwise; colour photographs (``background=None``) have no paper: the border is repeated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from metagan.errors import ConfigError

ELASTIC_GRID = 5  # control points per side of the elastic field
AFFINE_NOISE = 4  # uniforms per image: angle, scale, shift x, shift y
ELASTIC_NOISE = 2 * ELASTIC_GRID**2
STROKE_NOISE = 1
FAMILIES = ("affine", "elastic", "stroke")


def affine_matrix(angle: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """(N,) radians, (N,) scale factors, (N, 2) shifts in grid units ([-1, 1] spans the image)
    -> (N, 2, 3) ``affine_grid`` matrices (output -> input, hence the inverse scale)."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )


def affine_grid(theta: Tensor, h: int, w: int) -> Tensor:
    """``F.affine_grid(theta, (N, C, h, w), align_corners=False)`` written out (it has no
    batching rule under ``vmap``): (N, 2, 3) -> (N, h, w, 2) sampling points, x then y."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, dtype=theta.dtype, device=theta.device)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, dtype=theta.dtype, device=theta.device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w).to(theta)], -1)
    return torch.einsum("hwk,njk->nhwj", base, theta)


def elastic_field(control: Tensor, size: int) -> Tensor:
    """(N, 2, G, G) control displacements (grid units, x then y) -> (N, size, size, 2) field,
    bicubic through the control points, which sit on the image's corners and edges."""
    field = F.interpolate(control, size=(size, size), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def stroke_width(x: Tensor, t: Tensor, background: float | Tensor) -> Tensor:
    """Thicker (t > 0) or thinner (t < 0) strokes: ``x`` (N, C, H, W) blended with its 3 x 3
    dilation by t, or with its erosion by -t; t (N,) in [-1, 1], 0 is the identity. Ink is
    whatever differs from the paper value ``background`` (-1 or +1, or such a 0-d tensor)."""
    # ink is brighter than paper when inverted
    sign = (
        -torch.sign(background) if isinstance(background, Tensor) else -math.copysign(1, background)
    )
    ink = (x - background) * sign  # >= 0 on strokes
    dilated = F.max_pool2d(ink, 3, stride=1, padding=1)
    eroded = -F.max_pool2d(-ink, 3, stride=1, padding=1)
    t = t.view(-1, 1, 1, 1).to(x)
    ink = ink + t.clamp(min=0) * (dilated - ink) + (-t).clamp(min=0) * (eroded - ink)
    return ink * sign + background


def deform(
    x: Tensor,
    *,
    theta: Tensor | None = None,
    control: Tensor | None = None,
    stroke: Tensor | None = None,
    background: float | Tensor | None,
) -> Tensor:
    """``x`` (N, C, H, W) in [-1, 1]: stroke width by ``stroke`` (N,), then resampled once
    along the affine map ``theta`` (N, 2, 3) plus the elastic field of ``control``
    (N, 2, G, G). Any of them may be None (not applied); all None returns ``x``."""
    if stroke is not None:
        x = stroke_width(x, stroke, background)
    if theta is None and control is None:
        return x
    n, _, h, w = x.shape
    if theta is None:
        theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(n, 2, 3)
    grid = affine_grid(theta.to(x), h, w)  # (N, H, W, 2)
    if control is not None:
        grid = grid + elastic_field(control.to(x), h)
    if background is None:  # photographs: no paper colour, the border is repeated
        return F.grid_sample(x, grid, align_corners=False, padding_mode="border")
    out = F.grid_sample(x - background, grid, align_corners=False, padding_mode="zeros")
    return out + background


@dataclass(frozen=True, kw_only=True)
class Jitter:
    """Random free transforms of drawings, one draw per image::

        jitter = Jitter(affine=1.0, elastic=2.0, stroke=0.5, background=-1.0)
        more = jitter.expand(shots, 64, torch.Generator().manual_seed(0))  # (64, C, H, W)

    Strengths: ``affine`` 1 = rotation ±10°, scale 0.9–1.1, shift ±2 px at 28 px; ``elastic``
    the largest control-point displacement in px at 28 px (below 3.5); ``stroke`` in [0, 1].
    0 switches a transform off. ``background`` is the paper's value (-1 for inverted images).
    """

    affine: float = 0.0
    elastic: float = 0.0
    stroke: float = 0.0
    background: float | None = -1.0  # None: colour photographs (the border is repeated)

    def __post_init__(self):
        for key, hi in (("affine", 3.0), ("elastic", 3.5), ("stroke", 1.0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= hi:
                raise ConfigError(
                    f"{key} strength must be a number in [0, {hi}] (0 = off), got {v!r}"
                )
        if self.background is None and self.stroke > 0:
            raise ConfigError(
                "stroke width is for drawings on paper; colour photographs have no strokes "
                "(use the free rows affine, elastic, flip, crop, colour or photo)"
            )
        if self.background is not None and self.background not in (-1.0, 1.0):
            raise ConfigError(
                f"background must be -1, +1 or None (photographs), got {self.background!r}"
            )

    @property
    def noise(self) -> int:
        """Uniforms drawn per image (only for the transforms that are on)."""
        return ((self.affine > 0) * AFFINE_NOISE + (self.elastic > 0) * ELASTIC_NOISE
                + (self.stroke > 0) * STROKE_NOISE)  # fmt: skip

    def params(self, u: Tensor, size: int) -> dict[str, Tensor | None]:
        """Uniform noise ``u`` (N, :attr:`noise`) in [0, 1) -> the keyword arguments of
        :func:`deform` (``theta``, ``control``, ``stroke``) for images of side ``size``."""
        out: dict[str, Tensor | None] = {"theta": None, "control": None, "stroke": None}
        i = 0
        if self.affine > 0:
            a = u[:, i : i + AFFINE_NOISE]
            i += AFFINE_NOISE
            angle = (2 * a[:, 0] - 1) * math.radians(10.0 * self.affine)
            scale = (1 - 0.1 * self.affine) + 0.2 * self.affine * a[:, 1]
            shift = (2 * a[:, 2:] - 1) * (2.0 * self.affine * size / 28) * 2 / size
            out["theta"] = affine_matrix(angle, scale, shift)
        if self.elastic > 0:
            e = u[:, i : i + ELASTIC_NOISE]
            i += ELASTIC_NOISE
            px = self.elastic * size / 28
            g = ELASTIC_GRID
            out["control"] = ((2 * e - 1) * px * 2 / size).view(-1, 2, g, g)
        if self.stroke > 0:
            out["stroke"] = self.stroke * (2 * u[:, i] - 1)
        return out

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One random transform per image of ``x`` (N, C, H, W) in [-1, 1]."""
        if self.noise == 0:
            return x.clone()
        # float64 noise: the affine-only jitter draws exactly the numbers it always drew
        u = torch.rand(x.shape[0], self.noise, generator=generator, dtype=torch.float64)
        p = self.params(u, x.shape[-1])
        return deform(x, **p, background=self.background)

    def expand(self, shots: Tensor, num: int, generator: torch.Generator) -> Tensor:
        """``num`` jittered copies of the shots (K, C, H, W), cycling through them: (num, C, H, W)."""
        idx = torch.arange(num) % shots.shape[0]
        return self(shots[idx], generator)
