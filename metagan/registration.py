"""Registration of drawings: the smooth warp that carries one drawing onto another.

:func:`register` fits, for every pair ``(a[n], b[n])``, an affine map plus a smooth control-grid
displacement (the parameterisation of :func:`metagan.transforms.deform`: ``theta`` (N, 2, 3) and
``control`` (N, 2, G, G), G = :data:`~metagan.transforms.ELASTIC_GRID`) such that
``deform(a, theta=theta, control=control) ≈ b``. It minimises the squared difference of the two
drawings blurred by a Gaussian, coarse to fine: first the affine map alone on strongly blurred
images, then affine and control grid on less blurred ones (Adam, a fixed number of steps per
stage, control displacements kept below the fold-free bound). Every pair is fitted
independently in one batch, and the whole fit is a pure function of the images (written with
:func:`torch.func.grad`), so it also runs inside a generator under ``vmap``.

What it is for: the K drawings of one character differ by the way a hand varies it; the fields
between them are that variation, which no free jitter knows. :func:`towards` warps a drawing
part of the way along its field to another (samples *between* two shots), and
:class:`FieldBank` is a low-rank Gaussian model (PCA) of the fields between drawings of the same
character, fitted on many characters and applied to a new one when there is a single shot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from metagan.errors import ConfigError
from metagan.transforms import ELASTIC_GRID, deform

FIELD = 6 + 2 * ELASTIC_GRID**2  # one warp as a vector: theta - identity (6), control (2 G²)
MAX_CONTROL_PX = 3.4  # at 28 px: neighbouring control points are 7 px apart, no fold below 3.5
CONTROL_BOUND = MAX_CONTROL_PX * 2 / 28  # the same bound in grid units ([-1, 1] spans the image)
# coarse to fine: (Gaussian blur sigma in px at 28 px, Adam steps, control grid free)
SCHEDULE = ((2.0, 30, False), (1.0, 60, True), (0.5, 60, True))
LR = 0.01  # Adam's first step in grid units ([-1, 1] spans the image): 0.14 px at 28 px
EPS = 1e-3  # Adam's epsilon, in units of the loss's gradient (a sum over pixels)


def _gauss(size: int, sigma: float, ref: Tensor) -> Tensor:
    """(size, size) matrix that blurs one axis with a Gaussian of ``sigma`` px (rows sum to 1)."""
    i = torch.arange(size, dtype=ref.dtype, device=ref.device)
    g = torch.exp(-0.5 * ((i[:, None] - i[None]) / sigma) ** 2)
    return g / g.sum(1, keepdim=True)


def _blur(x: Tensor, m: Tensor) -> Tensor:
    """Separable blur of (N, C, H, W) images by the (H, H) matrix ``m`` (square images)."""
    return torch.einsum("ih,nchw,jw->ncij", m, x, m)


def unpack(p: Tensor) -> tuple[Tensor, Tensor]:
    """(N, FIELD) warp vectors -> theta (N, 2, 3), control (N, 2, G, G)."""
    eye = torch.eye(2, 3, dtype=p.dtype, device=p.device)
    g = ELASTIC_GRID
    return eye + p[:, :6].reshape(-1, 2, 3), p[:, 6:].reshape(-1, 2, g, g)


def pack(theta: Tensor, control: Tensor) -> Tensor:
    """theta (N, 2, 3), control (N, 2, G, G) -> (N, FIELD) vectors (identity = zeros)."""
    eye = torch.eye(2, 3, dtype=theta.dtype, device=theta.device)
    return torch.cat([(theta - eye).flatten(1), control.flatten(1)], 1)


def register_vectors(a: Tensor, b: Tensor, background: float | Tensor) -> Tensor:
    """:func:`register` as (N, FIELD) vectors (:func:`unpack` reads them); a pure function of
    the images, differentiable nowhere (the images are detached), usable under ``vmap``."""
    a, b = a.detach(), b.detach()
    n, size = a.shape[0], a.shape[-1]
    bound = CONTROL_BOUND
    p = torch.zeros(n, FIELD, dtype=a.dtype, device=a.device)
    free_affine = torch.zeros(FIELD, dtype=a.dtype, device=a.device)
    free_affine[:6] = 1.0
    for sigma, steps, grid in SCHEDULE:
        m = _gauss(size, sigma * size / 28, a)
        # the blurred drawings on zero paper; the blurred source is warped (not the warped one
        # blurred), so the bilinear interpolation's kinks at whole pixels are smoothed away
        source, target = _blur(a - background, m), _blur(b - background, m)
        mask = torch.ones_like(free_affine) if grid else free_affine

        def loss(p, source=source, target=target):
            theta, control = unpack(p)
            w = deform(source, theta=theta, control=control, background=0.0)
            return ((w - target) ** 2).sum()

        grad = torch.func.grad(loss)
        m1, m2 = torch.zeros_like(p), torch.zeros_like(p)
        for t in range(1, steps + 1):  # Adam, written out (pure tensor ops), with its second
            gr = grad(p) * mask  # moment shared by a group (affine; control grid) of each
            m1 = 0.9 * m1 + 0.1 * gr  # pair, so that a control point the drawing barely
            sq = gr * gr  # constrains (on blank paper) moves by its small gradient, not by LR
            group = torch.cat([sq[:, :6].mean(1, keepdim=True).expand(-1, 6),
                               sq[:, 6:].mean(1, keepdim=True).expand(-1, FIELD - 6)], 1)  # fmt: skip
            m2 = 0.999 * m2 + 0.001 * group
            lr = LR * (1 - 0.9 * (t - 1) / steps)  # decays to a tenth: settles, not jitters
            step = (m1 / (1 - 0.9**t)) / ((m2 / (1 - 0.999**t)).sqrt() + EPS)
            p = p - lr * step.clamp(-2.0, 2.0)
            p = torch.cat([p[:, :6], p[:, 6:].clamp(-bound, bound)], 1)
    return p


def register(a: Tensor, b: Tensor, *, background: float = -1.0) -> tuple[Tensor, Tensor]:
    """The warp of every drawing ``a[n]`` onto ``b[n]`` (both (N, C, H, W) in [-1, 1], square):
    ``(theta (N, 2, 3), control (N, 2, G, G))`` such that
    ``metagan.transforms.deform(a, theta=theta, control=control, background=background) ≈ b``.
    ``background`` is the paper's value (-1 for inverted drawings: white strokes on black)."""
    if a.ndim != 4 or a.shape != b.shape or a.shape[-1] != a.shape[-2]:
        raise ConfigError(
            f"register needs two batches of square images of one shape (N, C, H, W), got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if background not in (-1.0, 1.0):
        raise ConfigError(f"background must be -1 or +1 (the paper's value), got {background!r}")
    return unpack(register_vectors(a.float(), b.float(), background))


def towards(p: Tensor, t: Tensor) -> Tensor:
    """A fraction ``t`` (N,) of the warps ``p`` (N, FIELD): 0 is the identity, 1 the whole warp
    (affine part and control displacements scaled alike)."""
    return p * t[:, None]


def compose(outer: Tensor, inner: Tensor) -> Tensor:
    """Two warps as one (N, FIELD): sample along ``outer`` the image already warped by ``inner``
    (``deform(deform(x, inner), outer)``), to first order in the control displacements: the
    affine maps multiply, ``inner``'s control field is added and ``outer``'s is carried through
    ``inner``'s linear part."""
    t_o, c_o = unpack(outer)
    t_i, c_i = unpack(inner)
    lin = t_i[:, :, :2]  # (N, 2, 2)
    theta = torch.cat([lin @ t_o[:, :, :2], (lin @ t_o[:, :, 2:]) + t_i[:, :, 2:]], 2)
    control = c_i + torch.einsum("nij,njgh->nigh", lin, c_o)
    return pack(theta, control)


@dataclass(frozen=True)
class FieldBank:
    """A low-rank Gaussian model of real warps: ``mean`` (FIELD,) and ``basis`` (R, FIELD), the
    principal directions scaled by their standard deviations, so ``mean + c @ basis`` with
    ``c ~ N(0, I)`` draws a warp like those it was fitted on."""

    mean: Tensor
    basis: Tensor

    @classmethod
    def fit(cls, fields: Tensor, rank: int = 8) -> FieldBank:
        """PCA of (M, FIELD) warp vectors (e.g. :func:`register_vectors` between drawings of the
        same characters), keeping ``rank`` components."""
        if fields.ndim != 2 or fields.shape[1] != FIELD or fields.shape[0] < 2:
            raise ConfigError(
                f"FieldBank.fit needs (M >= 2, {FIELD}) warp vectors, got {tuple(fields.shape)}"
            )
        if not 1 <= rank <= min(fields.shape):
            raise ConfigError(f"rank must be in [1, {min(fields.shape)}], got {rank}")
        mean = fields.mean(0)
        _, s, vh = torch.linalg.svd(fields - mean, full_matrices=False)
        std = s[:rank] / math.sqrt(fields.shape[0] - 1)
        return cls(mean, std[:, None] * vh[:rank])

    def sample(self, c: Tensor) -> Tensor:
        """(N, R) standard normal coefficients -> (N, FIELD) warps."""
        return self.mean + c @ self.basis
