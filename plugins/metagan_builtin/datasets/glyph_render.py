"""Drawing ``glyphs``' strokes: Catmull-Rom splines (or polylines) rendered with Pillow's
ImageDraw on a supersampled page and box-filtered down (antialiased), vectorised over the D
noisy drawings of one character. Used by :mod:`metagan_builtin.datasets.glyphs`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

_SUPERSAMPLE = 3  # page drawn at 3x and box-filtered down: antialiased strokes
_SAMPLES = 7  # points per spline segment; plenty at 64 px
_COS_CORNER = math.cos(math.radians(20))  # joints turning more than this get a round disc


@dataclass(frozen=True)
class Stroke:
    """A stroke of a character, in page coordinates ([0, 1]^2, y down)."""

    points: np.ndarray  # (P, 2), or (D, P, 2) for D noisy drawings
    smooth: bool
    closed: bool
    jitter: float = 0.0  # motor noise per control point (page fractions)


_BASIS: dict[int, np.ndarray] = {}
_PAD: dict[tuple[int, bool], np.ndarray] = {}


def _catmull_rom_basis(samples: int) -> np.ndarray:
    """(samples, 4) weights of p0..p3 for t in [0, 1)."""
    if samples not in _BASIS:
        t = np.linspace(0, 1, samples, endpoint=False)[:, None]
        t2, t3 = t * t, t * t * t
        _BASIS[samples] = 0.5 * np.concatenate(
            [-t3 + 2 * t2 - t, 3 * t3 - 5 * t2 + 2, -3 * t3 + 4 * t2 + t, t3 - t2], 1
        )
    return _BASIS[samples]


def _segment_index(p: int, closed: bool) -> np.ndarray:
    """(p - 1, 4) indices of each spline segment's four control points."""
    key = (p, closed)
    if key not in _PAD:
        i = np.arange(-1, p - 1)[:, None] + np.arange(4)  # (p - 1, 4)
        # closed: neighbours wrap around (point p - 1 repeats point 0); open: ends repeat
        _PAD[key] = i % (p - 1) if closed else np.clip(i, 0, p - 1)
    return _PAD[key]


def _dense(points: np.ndarray, smooth: bool, closed: bool) -> np.ndarray:
    """(D, P, 2) control points of D drawings -> (D, M, 2) polyline points."""
    if closed:
        points = np.concatenate([points, points[:, :1]], 1)
    if not smooth:
        return points
    segs = points[:, _segment_index(points.shape[1], closed)]  # (D, P-1, 4, 2)
    curve = np.einsum("sk,dpkc->dpsc", _catmull_rom_basis(_SAMPLES), segs)  # (D, P-1, S, 2)
    curve = curve.reshape(points.shape[0], -1, 2)
    return np.concatenate([curve, points[:, -1:]], 1)


def render(
    strokes: list[Stroke],
    widths: np.ndarray,
    size: int,
    *,
    supersample: int = _SUPERSAMPLE,
) -> list[Image.Image]:
    """Draw D drawings. ``strokes[i].points`` is (D, P, 2) here; widths is (D, n_strokes)."""
    big = size * supersample
    d = widths.shape[0]
    offset = np.stack([np.arange(d) * big, np.zeros(d)], 1)[:, None]  # (D, 1, 2)
    pens = np.maximum(widths * big, 1.0)  # (D, n_strokes) pen widths in sheet pixels
    lines = []  # per stroke: (D, M', 2) points
    for s in strokes:
        pts = _dense(s.points, s.smooth, s.closed) * big + offset  # (D, M, 2)
        if s.smooth:
            # Pillow's wide lines are ragged where segments are shorter than the pen is wide,
            # so keep about one spline point per pen width ...
            length = np.sqrt((np.diff(pts[0], axis=0) ** 2).sum(-1)).sum()
            m = pts.shape[1] - 1
            keep = int(np.clip(np.ceil(length / pens.mean()) + 1, 2, m + 1))
            pts = pts[:, (np.arange(keep) * m) // (keep - 1)]
        lines.append(pts)
    # All D drawings go side by side on one sheet, which is then reduced and cut up: one page,
    # one ImageDraw and one reduce instead of D of each.
    sheet = Image.new("L", (big * d, big), 255)
    draw = ImageDraw.Draw(sheet)
    core = getattr(draw, "draw", None)  # Pillow's C drawing object: skips per-call ink parsing
    for pts, pen in zip(lines, pens.T):
        r = (pen / 2)[:, None, None]  # (D, 1, 1)
        boxes = np.concatenate([pts - r, pts + r], -1)  # (D, M', 4) disc boxes
        # ... and give the pen a round tip: a disc at both ends and at every joint that turns
        # by more than ~20 degrees (flatter joints show no notch). Much cheaper than Pillow's
        # joint="curve", which draws a pie slice per point.
        v1, v2 = pts[:, 1:-1] - pts[:, :-2], pts[:, 2:] - pts[:, 1:-1]  # (D, M'-2, 2)
        dot = (v1 * v2).sum(-1)
        norms = np.sqrt((v1 * v1).sum(-1) * (v2 * v2).sum(-1))
        corner = np.ones(pts.shape[:2], dtype=bool)  # (D, M')
        corner[:, 1:-1] = dot < _COS_CORNER * norms
        ends = np.cumsum(corner.sum(1)).tolist()
        discs = boxes[corner].tolist()
        start = 0
        for flat, w, end in zip(pts.reshape(d, -1).tolist(), pen.round().tolist(), ends):
            draw.line(flat, fill=0, width=int(w))
            for box in discs[start:end]:
                if core is not None:
                    core.draw_ellipse(box, 0, 1)
                else:
                    draw.ellipse(box, fill=0)
            start = end
    small = sheet.reduce(supersample) if supersample > 1 else sheet
    return [small.crop((j * size, 0, (j + 1) * size, size)) for j in range(d)]
