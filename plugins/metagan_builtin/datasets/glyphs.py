"""``glyphs``: a procedural, Omniglot-like dataset of invented alphabets; no files, no download.

Structure, as in Omniglot: alphabets -> characters -> drawings.

- An **alphabet** has its own style: a small set of stroke primitives drawn from a few shape
  families (straight lines, arcs, hooks, zigzags, loops, waves, free curves, corners, dots,
  spirals), a pen width, the rotations its strokes may take (right angles, eighths or any), a
  slant, a width-to-height ratio, a placement grid and a habit of joining strokes end to end.
- A **character** is 2-4 strokes of its alphabet's primitives, each rotated, mirrored, scaled
  and placed on the grid (or attached to the end of an earlier stroke), then centred and scaled
  to fill the page. Characters of one alphabet are checked to differ from each other at the
  pixel level.
- A **drawing** renders its character with motor noise: every control point jitters, each
  stroke shifts a little, the pen width varies, and the whole drawing gets a small random
  affine transform (rotation, scale, shear, shift).

Strokes are Catmull-Rom splines (or polylines, for angular primitives) drawn with Pillow's
ImageDraw on a 3x supersampled page and box-filtered down, so edges are antialiased. Images are
mode "L", dark strokes on white, ``render_size`` pixels square.

Everything is derived from ``seed`` through numpy SeedSequences keyed by (alphabet, character):
the same seed gives identical pixels in any loading order; another seed gives other alphabets.
Classes are rendered lazily, one class (all its drawings, vectorised) per ``load_class``.
Measured on one core of a shared 2-core CPU box (Python 3.11, Pillow 13, numpy 2.4): the default
30 alphabets, ~1,250 characters x 20 drawings = ~25,000 images at 64 px, take about 4.3 s in
all (3.4 ms per class), of which ~1 s is generating the alphabets on first use.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from metagan.data.base import ClassDataset, ClassRef
from metagan.errors import ConfigError
from metagan_builtin.datasets.glyph_render import Stroke, _dense, render

FAMILIES = (
    "line",
    "arc",
    "hook",
    "zigzag",
    "loop",
    "wave",
    "curve",
    "corner",
    "dot",
    "spiral",
)
_PURPOSES = {"count": 1, "alphabet": 2, "drawings": 3}  # SeedSequence words, one per use
_DISTINCT = 0.06  # minimum mean |difference| between two characters' clean 24 px renders


@dataclass(frozen=True)
class Primitive:
    """A stroke shape in a local frame centred on 0 with an extent of about 1."""

    points: np.ndarray  # (P, 2) control points
    smooth: bool  # Catmull-Rom through the points, else a polyline
    closed: bool  # the stroke returns to its start


@dataclass(frozen=True)
class Style:
    """One alphabet's hand."""

    primitives: tuple[Primitive, ...]
    width: float  # pen width as a fraction of the page
    rotations: tuple[float, ...] | None  # allowed stroke angles (radians); None: any angle
    slant: float  # shear x += slant * y
    aspect: float  # x stretch
    grid: int  # strokes are placed on a grid x grid lattice
    scale: tuple[float, float]  # stroke size range, fraction of the page
    connect: float  # chance that a stroke starts where an earlier one ends


def _arc(rng, n: int) -> np.ndarray:
    start = rng.uniform(0, 2 * math.pi)
    extent = rng.uniform(0.5, 1.6) * math.pi * rng.choice([-1, 1])
    t = start + extent * np.linspace(0, 1, n)
    return 0.5 * np.stack([np.cos(t), np.sin(t)], 1)


def _primitive(family: str, rng: np.random.Generator) -> Primitive:
    """One concrete primitive of ``family`` with random proportions."""
    if family == "line":
        length = rng.uniform(0.6, 1.0)
        bend = rng.uniform(-0.06, 0.06)
        pts = np.array([[-length / 2, 0.0], [0.0, bend], [length / 2, 0.0]])
        return Primitive(pts, smooth=True, closed=False)
    if family == "arc":
        return Primitive(_arc(rng, 7), smooth=True, closed=False)
    if family == "hook":
        curl = rng.uniform(0.12, 0.25)
        side = rng.choice([-1.0, 1.0])
        t = np.linspace(0, math.pi * rng.uniform(0.8, 1.3), 4)
        curl_pts = np.stack([side * curl * (1 - np.cos(t)), 0.5 - curl + curl * np.sin(t)], 1)
        pts = np.concatenate([[[0.0, -0.5], [0.0, 0.0]], curl_pts])
        return Primitive(pts, smooth=True, closed=False)
    if family == "zigzag":
        n = int(rng.integers(3, 6))
        x = np.linspace(-0.5, 0.5, n)
        y = rng.uniform(0.15, 0.4) * np.where(np.arange(n) % 2 == 0, -1.0, 1.0)
        return Primitive(np.stack([x, y], 1), smooth=False, closed=False)
    if family == "loop":
        t = np.linspace(0, 2 * math.pi, 8, endpoint=False)
        ry = rng.uniform(0.2, 0.5)
        return Primitive(np.stack([0.5 * np.cos(t), ry * np.sin(t)], 1), smooth=True, closed=True)
    if family == "wave":
        periods = rng.uniform(0.8, 2.0)
        x = np.linspace(-0.5, 0.5, 9)
        y = rng.uniform(0.1, 0.25) * np.sin(2 * math.pi * periods * (x + 0.5))
        return Primitive(np.stack([x, y], 1), smooth=True, closed=False)
    if family == "curve":
        pts = rng.uniform(-0.5, 0.5, size=(int(rng.integers(3, 5)), 2))
        pts[0], pts[-1] = [-0.5, rng.uniform(-0.5, 0.5)], [0.5, rng.uniform(-0.5, 0.5)]
        return Primitive(pts, smooth=True, closed=False)
    if family == "corner":
        angle = rng.uniform(0.35, 0.65) * math.pi
        leg = rng.uniform(0.5, 1.0)
        pts = np.array([[-0.5 + leg * math.cos(angle), -0.5 + leg * math.sin(angle)]])
        pts = np.concatenate([pts, [[-0.5, -0.5], [0.5, -0.5]]]) + [0.0, 0.5]
        return Primitive(pts, smooth=False, closed=False)
    if family == "dot":
        t = np.linspace(0, 2 * math.pi, 5, endpoint=False)
        r = rng.uniform(0.06, 0.1)
        return Primitive(np.stack([r * np.cos(t), r * np.sin(t)], 1), smooth=True, closed=True)
    if family == "spiral":
        turns = rng.uniform(1.0, 1.6)
        t = np.linspace(0, 2 * math.pi * turns, 10)
        r = 0.5 * np.linspace(0.15, 1.0, 10)
        return Primitive(np.stack([r * np.cos(t), r * np.sin(t)], 1), smooth=True, closed=False)
    raise AssertionError(family)


def make_style(rng: np.random.Generator) -> Style:
    """A random alphabet style."""
    families = rng.choice(len(FAMILIES), size=int(rng.integers(3, 6)), replace=False)
    prims = tuple(
        _primitive(FAMILIES[families[i % len(families)]], rng)
        for i in range(int(rng.integers(6, 11)))
    )
    kind = rng.choice(3)
    rotations = (
        tuple(k * math.pi / 2 for k in range(4))
        if kind == 0
        else tuple(k * math.pi / 4 for k in range(8))
        if kind == 1
        else None
    )
    lo = rng.uniform(0.3, 0.45)
    return Style(
        primitives=prims,
        width=float(rng.uniform(0.035, 0.07)),
        rotations=rotations,
        slant=float(rng.uniform(-0.3, 0.3)),
        aspect=float(rng.uniform(0.8, 1.2)),
        grid=int(rng.integers(2, 4)),
        scale=(lo, lo + rng.uniform(0.15, 0.3)),
        connect=float(rng.uniform(0.0, 0.8)),
    )


def _endpoints(s: Stroke) -> list[np.ndarray]:
    return [s.points[0]] if s.closed else [s.points[0], s.points[-1]]


def make_character(style: Style, rng: np.random.Generator) -> list[Stroke]:
    """2-4 strokes of the style's primitives, centred and scaled to fill about 70% of the page."""
    n = int(rng.choice([2, 2, 3, 3, 3, 4]))
    big = [p for p in style.primitives if np.ptp(p.points, axis=0).max() > 0.3]
    strokes: list[Stroke] = []
    for k in range(n):
        # The first stroke is never a dot: a character of dots alone is not much of a shape.
        pool = big if k == 0 and big else style.primitives
        prim = pool[int(rng.integers(len(pool)))]
        angle = (
            float(rng.choice(style.rotations))
            if style.rotations is not None
            else float(rng.uniform(0, 2 * math.pi))
        )
        c, s = math.cos(angle), math.sin(angle)
        flip = -1.0 if rng.random() < 0.5 else 1.0
        pts = prim.points * [flip, 1.0] @ np.array([[c, s], [-s, c]])
        pts = pts * rng.uniform(*style.scale) * [style.aspect, 1.0]
        if strokes and rng.random() < style.connect:
            anchor = _endpoints(strokes[int(rng.integers(len(strokes)))])
            anchor = anchor[int(rng.integers(len(anchor)))]
            start = pts[-1] if rng.random() < 0.5 and not prim.closed else pts[0]
            pts = pts - start + anchor
        else:
            cell = rng.integers(style.grid, size=2)
            pts = pts + (cell + 0.5) / style.grid
        strokes.append(Stroke(pts, prim.smooth, prim.closed))
    # Slant, then centre and scale the whole character onto the page.
    all_pts = np.concatenate([_dense(s.points[None], s.smooth, s.closed)[0] for s in strokes])
    shear = np.array([[1.0, 0.0], [style.slant, 1.0]])
    all_pts = all_pts @ shear
    lo, hi = all_pts.min(0), all_pts.max(0)
    k = 0.7 / max(float((hi - lo).max()), 0.05)
    centre = (lo + hi) / 2
    out = []
    for s in strokes:
        pts = (s.points @ shear - centre) * k + 0.5
        spacing = float(np.median(np.sqrt((np.diff(pts, axis=0) ** 2).sum(-1))))
        out.append(Stroke(pts, s.smooth, s.closed, jitter=min(0.012, 0.2 * spacing)))
    return out


class GlyphsDataset(ClassDataset):
    """Procedural Omniglot-like alphabets (the default dataset; no files needed).

    :param root: must be None (nothing is read from disk).
    :param seed: picks the alphabets; the same seed gives identical images.
    :param num_alphabets: groups to generate (the default 30 gives ~1,270 characters).
    :param characters: (min, max) characters per alphabet, inclusive.
    :param drawings: drawings per character (Omniglot has 20).
    :param render_size: side of each image in pixels.
    """

    channels = 1  # grayscale drawings

    def __init__(
        self,
        *,
        root: str | os.PathLike | None = None,
        seed: int = 0,
        num_alphabets: int = 30,
        characters: tuple[int, int] = (34, 50),
        drawings: int = 20,
        render_size: int = 64,
    ):
        if root is not None:
            raise ConfigError(
                f"the glyphs dataset is generated and reads no files, but got root={str(root)!r}; "
                "leave root unset, or use the omniglot or folder dataset to read files"
            )
        super().__init__(root=None, seed=seed)
        for name, value, low in (
            ("num_alphabets", num_alphabets, 1),
            ("drawings", drawings, 1),
            ("render_size", render_size, 16),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"glyphs {name} must be an integer >= {low}, got {value!r}")
        lo, hi = characters
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
            raise ConfigError(
                f"glyphs characters must be (min, max) with 1 <= min <= max, got {characters!r}"
            )
        self.num_alphabets = num_alphabets
        self.drawings = drawings
        self.render_size = render_size
        self._alphabets: dict[int, tuple[Style, list[list[Stroke]]]] = {}
        self._where: list[tuple[int, int]] = []  # class index -> (alphabet, character)
        for a in range(num_alphabets):
            count = int(self._rng("count", a).integers(lo, hi + 1))
            for c in range(count):
                self._where.append((a, c))
                self.classes.append(
                    ClassRef(f"alphabet{a:02d}/character{c:02d}", f"alphabet{a:02d}", drawings)
                )

    def _rng(self, purpose: str, *key: int) -> np.random.Generator:
        """An independent generator for (seed, purpose, key): results do not depend on which
        classes were loaded before, or in which order."""
        words = [self.seed % (1 << 64), _PURPOSES[purpose], *key]
        return np.random.default_rng(np.random.SeedSequence(words))

    def alphabet(self, a: int) -> tuple[Style, list[list[Stroke]]]:
        """Alphabet ``a``'s style and its characters' clean strokes (generated once, cached)."""
        if a not in self._alphabets:
            rng = self._rng("alphabet", a)
            style = make_style(rng)
            count = sum(1 for aa, _ in self._where if aa == a)
            chars: list[list[Stroke]] = []
            thumbs = np.zeros((count, 24 * 24), dtype=np.float32)
            for c in range(count):
                for _attempt in range(60):  # redraw a character too close to an earlier one
                    strokes = make_character(style, rng)
                    thumb = _thumbnail(strokes, style.width)
                    if c == 0 or np.abs(thumbs[:c] - thumb).mean(1).min() >= _DISTINCT:
                        break
                chars.append(strokes)
                thumbs[c] = thumb
            self._alphabets[a] = (style, chars)
        return self._alphabets[a]

    def load_class(self, index: int) -> list[Image.Image]:
        """All drawings of one character, rendered now (nothing is cached here)."""
        a, c = self._where[self.check_index(index)]
        style, chars = self.alphabet(a)
        strokes = chars[c]
        rng = self._rng("drawings", a, c)
        d, n = self.drawings, len(strokes)
        # Motor noise: per-point jitter, per-stroke shift, then one affine per drawing.
        theta = rng.normal(0, math.radians(6), d)
        scale = 1 + rng.normal(0, 0.05, (d, 1))
        shear = rng.normal(0, 0.07, d)
        shift = rng.normal(0, 0.03, (d, 1, 2))
        cos, sin = np.cos(theta) * scale[:, 0], np.sin(theta) * scale[:, 0]
        affine = np.stack([np.stack([cos, sin], 1), np.stack([-sin + shear * cos, cos], 1)], 1)
        # Jitter in proportion to the spacing of the control points, so that a wave or a dot
        # does not turn into a scribble: the hand wobbles, it does not tremble. All strokes'
        # points are perturbed together, as one (D, P, 2) array.
        sizes = [len(s.points) for s in strokes]
        which = np.repeat(np.arange(n), sizes)  # (P,) stroke of each point
        sigma = np.repeat([s.jitter for s in strokes], sizes)[None, :, None]  # (1, P, 1)
        p = np.concatenate([s.points for s in strokes])[None]  # (1, P, 2)
        p = p + sigma * rng.normal(size=(d, len(which), 2))
        p = p + rng.normal(0, 0.015, (d, n, 2))[:, which]  # each stroke shifts a little
        p = np.einsum("dpc,dck->dpk", p - 0.5, affine) + 0.5 + shift  # (D, P, 2)
        parts = np.split(p, np.cumsum(sizes)[:-1], axis=1)
        noisy = [Stroke(q, s.smooth, s.closed) for q, s in zip(parts, strokes)]
        widths = style.width * np.exp(rng.normal(0, 0.12, (d, 1)) + rng.normal(0, 0.08, (d, n)))
        return render(noisy, widths, self.render_size)


def _thumbnail(strokes: list[Stroke], width: float) -> np.ndarray:
    """A clean, blurry-ish 24 px render in [0, 1] (1 = ink), for telling characters apart."""
    batch = [Stroke(s.points[None], s.smooth, s.closed) for s in strokes]
    widths = np.full((1, len(strokes)), max(width, 0.08))
    img = render(batch, widths, 24, supersample=2)[0]
    return 1.0 - np.asarray(img, dtype=np.float32).ravel() / 255.0
