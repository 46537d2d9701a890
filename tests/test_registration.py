"""Registration of drawings (metagan.registration) and the `between` generator built on it:
a known warp is recovered, warps compose as hand-derived, the bank's PCA has the hand-computed
spread, and `between` moves a shot onto another shot."""

import math

import pytest
import torch

from metagan.errors import ConfigError
from metagan.models import ArchConfig
from metagan.registration import FIELD, FieldBank, compose, pack, register
from metagan.testing import check_architecture
from metagan.transforms import affine_grid, affine_matrix, deform, elastic_field


def drawings(n: int) -> torch.Tensor:
    """n different smooth stroke drawings (+1 ink on -1 paper), 28 px: an arc and a bar."""
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    out = []
    for i in range(n):
        r = ((yy - 13 - i % 3) ** 2 + (xx - 12 - i % 2) ** 2).sqrt()
        ring = torch.exp(-(((r - 6 - i % 2) / 1.2) ** 2)) * (xx > 9 + i % 3)  # an open arc
        bar = torch.exp(-(((xx - 5 - 2 * i - 0.4 * yy) / 1.2) ** 2)) * (yy > 4) * (yy < 24)
        out.append((ring + bar).clamp(max=1) * 2 - 1)
    return torch.stack(out)[:, None]


def known_warp(n: int):
    g = torch.Generator().manual_seed(0)
    theta = affine_matrix(
        (2 * torch.rand(n, generator=g) - 1) * math.radians(10),
        0.9 + 0.2 * torch.rand(n, generator=g),
        (2 * torch.rand(n, 2, generator=g) - 1) * 2 * 2 / 28,  # +-2 px
    )
    control = (2 * torch.rand(n, 2, 5, 5, generator=g) - 1) * 2 * 2 / 28  # +-2 px
    return theta, control


def test_register_recovers_a_known_warp():
    a = drawings(6)
    theta, control = known_warp(6)
    b = deform(a, theta=theta, control=control, background=-1.0)
    th, c = register(a, b, background=-1.0)
    # the expectation is the known sampling grid itself, on the ink of the target (where the
    # drawing determines the warp; on blank paper any warp fits)
    want = affine_grid(theta, 28, 28) + elastic_field(control, 28)
    got = affine_grid(th, 28, 28) + elastic_field(c, 28)
    ink = b[:, 0] > 0
    err_px = ((got - want).norm(dim=-1) * 14)[ink]  # grid units -> px (2 units = 28 px)
    moved_px = ((want - affine_grid(torch.eye(2, 3).expand(6, 2, 3), 28, 28)).norm(dim=-1) * 14)[
        ink
    ]
    assert moved_px.mean() > 1.0  # the warp to recover is not small
    assert err_px.mean() < 0.3, f"mean error {err_px.mean():.2f} px of {moved_px.mean():.2f} px"
    warped = deform(a, theta=th, control=c, background=-1.0)
    assert ((warped - b) ** 2).mean() < 0.02 * ((a - b) ** 2).mean()


def test_register_of_a_drawing_onto_itself_stays_at_the_identity():
    a = drawings(3)
    th, c = register(a, a, background=-1.0)
    moved = (
        affine_grid(th, 28, 28)
        + elastic_field(c, 28)
        - affine_grid(torch.eye(2, 3).expand(3, 2, 3), 28, 28)
    )
    assert (moved.norm(dim=-1) * 14)[a[:, 0] > 0].mean() < 0.1  # px, on the ink


def test_register_refuses_mismatched_batches():
    with pytest.raises(ConfigError, match="two batches of square images"):
        register(torch.zeros(2, 1, 28, 28), torch.zeros(3, 1, 28, 28))
    with pytest.raises(ConfigError, match="background must be -1 or \\+1"):
        register(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28), background=0.5)


def test_compose_of_affine_maps_is_their_product():
    # deform samples output point p at theta @ (p, 1): warping by inner, then by outer, samples
    # x at inner(outer(p)). outer halves the sampled coordinates, inner shifts by +0.2 in x:
    # inner(outer(p)) = 0.5 p + (0.2, 0)
    outer = pack(torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]]), torch.zeros(1, 2, 5, 5))
    inner = pack(torch.tensor([[[1.0, 0.0, 0.2], [0.0, 1.0, 0.0]]]), torch.zeros(1, 2, 5, 5))
    want = pack(torch.tensor([[[0.5, 0.0, 0.2], [0.0, 0.5, 0.0]]]), torch.zeros(1, 2, 5, 5))
    torch.testing.assert_close(compose(outer, inner), want)
    # inner's control field is added, outer's is carried through inner's linear part (2x)
    c = torch.randn(1, 2, 5, 5)
    inner2 = pack(torch.tensor([[[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]]), torch.zeros(1, 2, 5, 5))
    outer2 = pack(torch.eye(2, 3)[None], c)
    torch.testing.assert_close(compose(outer2, inner2)[:, 6:], 2 * c.flatten(1))


def test_field_bank_pca_has_the_hand_computed_spread():
    # four warps +-3 e1 and +-1 e2: mean 0, variances 18/3 = 6 along e1 and 2/3 along e2
    e = torch.eye(FIELD)
    fields = torch.stack([3 * e[0], -3 * e[0], e[7], -e[7]])
    bank = FieldBank.fit(fields, rank=2)
    torch.testing.assert_close(bank.mean, torch.zeros(FIELD))
    torch.testing.assert_close(
        bank.basis.abs(), torch.stack([6**0.5 * e[0], (2 / 3) ** 0.5 * e[7]])
    )
    torch.testing.assert_close(bank.sample(torch.zeros(4, 2)), torch.zeros(4, FIELD))
    with pytest.raises(ConfigError, match="rank must be in"):
        FieldBank.fit(fields, rank=9)


def test_between_generator_moves_a_shot_onto_the_other(registries):
    from plugins.metagan_builtin.architectures.dagan import one_shot

    build = registries.architectures.get("between")
    check_architecture(build, z_dim=80, width=4, tasks=2)
    g = build(ArchConfig(image_size=28, z_dim=80, width=4)).generator
    with torch.no_grad():
        g.gain.fill_(-40.0)  # no jitter: exp(-40) ~ 0
    a = drawings(1)
    theta, control = known_warp(1)
    shots = torch.cat([a, deform(a, theta=theta, control=control, background=-1.0)])  # (2, ...)
    z = torch.zeros(3, 80)
    n = g.n
    # shot i = 0: the shot is a hash of z's last entry; take the first value that picks it
    z[:, -1] = next(v for v in torch.arange(0.0, 1.0, 0.1) if one_shot(v.view(1, 1), 2)[0, 0] == 1)
    z[:, n] = 9.0  # shot j = 1
    z[:, n + 1] = torch.tensor([-9.0, 0.0, 9.0])  # t ~ 0, 1/2, 1
    out = g(z, shots)
    torch.testing.assert_close(out[0], shots[0], atol=1e-3, rtol=0)  # t = 0: the shot itself
    assert ((out[2] - shots[1]) ** 2).mean() < 0.02 * ((shots[0] - shots[1]) ** 2).mean()
    d0, d1 = ((out[1] - shots[0]) ** 2).mean(), ((out[1] - shots[1]) ** 2).mean()
    assert 0 < d0 < ((shots[0] - shots[1]) ** 2).mean() and 0 < d1  # half way: neither shot
    # one shot (K = 1): nothing to move towards; the bank (zero until fitted) adds nothing
    torch.testing.assert_close(g(z, shots[:1]), shots[:1].expand(3, -1, -1, -1), atol=1e-3, rtol=0)
