"""The free transforms (metagan.transforms) against hand-derived images: a zero field is the
identity, a constant field moves a dot by exactly its displacement, the 3 x 3 dilation of a dot
is a 3 x 3 square, and the uncovered area is paper."""

import math

import pytest
import torch

from metagan.errors import ConfigError
from metagan.eval import free
from metagan.transforms import ELASTIC_GRID, Jitter, affine_matrix, deform, stroke_width


def _dot(bg: float, n: int = 1, at: tuple[int, int] = (14, 14)) -> torch.Tensor:
    x = torch.full((n, 1, 28, 28), bg)
    x[:, 0, at[0], at[1]] = -bg  # one pixel of ink
    return x


def _centre(x: torch.Tensor, bg: float) -> tuple[torch.Tensor, torch.Tensor]:
    mass = ((x - bg) * (-bg)).clamp(min=0)[:, 0]  # ink >= 0, (N, 28, 28)
    rows, total = torch.arange(28.0), mass.sum((1, 2))
    return (mass.sum(2) * rows).sum(1) / total, (mass.sum(1) * rows).sum(1) / total


def test_zero_strength_elastic_and_affine_are_the_identity():
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    zero = torch.zeros(3, 2, ELASTIC_GRID, ELASTIC_GRID)
    eye = torch.eye(2, 3).expand(3, 2, 3)
    for kw in ({"control": zero}, {"theta": eye}, {"theta": eye, "control": zero},
               {"stroke": torch.zeros(3)}):  # fmt: skip
        torch.testing.assert_close(deform(x, **kw, background=-1.0), x, atol=1e-5, rtol=0)
    # a Jitter whose strengths are all 0 draws nothing and changes nothing
    j = Jitter(background=-1.0)
    assert j.noise == 0
    torch.testing.assert_close(j(x, torch.Generator()), x)


def test_constant_elastic_field_moves_a_dot_by_its_displacement():
    # a field of +2 px in x everywhere: output pixel (r, c) reads input (r, c + 2), so the dot
    # drawn at column 14 appears at column 12 (bicubic through equal values is that value)
    control = torch.zeros(1, 2, ELASTIC_GRID, ELASTIC_GRID)
    control[:, 0] = 2 * 2 / 28  # 2 px in grid units
    out = deform(_dot(-1.0), control=control, background=-1.0)
    expected = _dot(-1.0, at=(14, 12))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_affine_shift_moves_a_dot_by_its_shift():
    theta = affine_matrix(torch.zeros(1), torch.ones(1), torch.tensor([[0.0, -3 * 2 / 28]]))
    out = deform(_dot(1.0), theta=theta, background=1.0)  # y shift -3 px: dot moves down 3
    torch.testing.assert_close(out, _dot(1.0, at=(17, 14)), atol=1e-5, rtol=0)


def test_jitter_strengths_bound_the_motion_of_a_dot():
    # strength 1 affine: the dot q (0.5 px from the centre 13.5 on each axis) lands at
    # s R^-1 (q - t): per axis at most s |t| <= 1.1 * 2 px from the shift, plus
    # |s R^-1 - I| |q| <= (0.1 + 2 sin 5° * 1.1) * 0.71 < 0.25 px from rotation and scale;
    # elastic 2 px: at most 2 px plus the bicubic overshoot (< 25% of the largest displacement)
    g = torch.Generator().manual_seed(3)
    x = _dot(-1.0, n=300)
    cy, cx = _centre(Jitter(affine=1.0)(x, g), -1.0)
    assert (cx - 14).abs().max() <= 2.45 and (cy - 14).abs().max() <= 2.45
    assert (cx - 14).abs().max() > 1.2  # and it does move
    cy, cx = _centre(Jitter(elastic=2.0)(x, g), -1.0)
    assert (cx - 14).abs().max() <= 2.5 and (cx - 14).abs().max() > 1.0
    assert Jitter(affine=1.0, elastic=2.0, stroke=0.5).noise == 4 + 2 * ELASTIC_GRID**2 + 1


def test_dilation_and_erosion_of_a_known_image():
    for bg in (-1.0, 1.0):
        dot = _dot(bg)
        square = torch.full_like(dot, bg)
        square[:, 0, 13:16, 13:16] = -bg  # the 3 x 3 dilation of the dot
        torch.testing.assert_close(stroke_width(dot, torch.ones(1), bg), square)
        # half way: the 8 neighbours get half the ink (value 0), the dot keeps all of it
        half = stroke_width(dot, torch.full((1,), 0.5), bg)
        assert half[0, 0, 14, 14] == -bg and half[0, 0, 13, 13] == 0.0
        assert half[0, 0, 12, 12] == bg
        # erosion of the square gives the dot back; of the dot, an empty page
        torch.testing.assert_close(stroke_width(square, -torch.ones(1), bg), dot)
        torch.testing.assert_close(stroke_width(dot, -torch.ones(1), bg), torch.full_like(dot, bg))


def test_paper_stays_paper_whatever_the_transform():
    for bg in (-1.0, 1.0):
        page = torch.full((4, 1, 28, 28), bg)
        out = Jitter(affine=1.5, elastic=3.0, stroke=1.0, background=bg)(
            page, torch.Generator().manual_seed(1)
        )
        torch.testing.assert_close(out, page)


def test_affine_strength_one_is_the_classic_affine_jitter():
    # rotation ±10°, scale 0.9-1.1, shift ±2 px, from the same four uniforms per image
    u = torch.tensor([[0.0, 0.0, 1.0, 0.5], [1.0, 1.0, 0.5, 0.0]], dtype=torch.float64)
    theta = Jitter(affine=1.0).params(u, 28)["theta"]
    a, s = math.radians(10), torch.tensor([0.9, 1.1], dtype=torch.float64)
    expected = torch.stack([
        torch.tensor([[math.cos(-a), -math.sin(-a), 2 * 2 / 28], [math.sin(-a), math.cos(-a), 0.0]]) / torch.tensor([[s[0], s[0], 1], [s[0], s[0], 1]]),
        torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), -2 * 2 / 28]]) / torch.tensor([[s[1], s[1], 1], [s[1], s[1], 1]]),
    ]).to(torch.float64)  # fmt: skip
    torch.testing.assert_close(theta, expected)


def test_free_rows_are_named_by_their_parts():
    assert free.parts("affine+elastic+stroke") == ("affine", "elastic", "stroke")
    j = free.jitter("elastic+stroke", {"affine": 1.0, "elastic": 2.0, "stroke": 0.5}, -1.0)
    assert (j.affine, j.elastic, j.stroke) == (0.0, 2.0, 0.5)
    for bad in ("blur", "affine+affine", "", "affine+"):
        with pytest.raises(ConfigError, match="unknown free reference"):
            free.parts(bad)
    with pytest.raises(ConfigError, match="elastic strength must be a number in"):
        Jitter(elastic=4.0)
    assert free.parse_strengths(["elastic=1,2.5"]) == {"elastic": (1.0, 2.5)}
    with pytest.raises(ConfigError, match="PART=S"):
        free.parse_strengths(["blur=1"])


def test_affine_grid_is_torchs():
    from torch.nn import functional as F

    from metagan.transforms import affine_grid

    theta = torch.randn(3, 2, 3, generator=torch.Generator().manual_seed(0))
    want = F.affine_grid(theta, [3, 1, 28, 20], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 28, 20), want)
