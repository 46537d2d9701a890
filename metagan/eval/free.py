"""The free reference rows of ``metagan eval``: what a user gets without any GAN.

A free row is a family of :class:`metagan.transforms.Jitter` transforms named by its parts:
``affine``, ``elastic``, ``stroke`` or a ``+``-joined composition (``affine+elastic+stroke``).
Each part has candidate strengths (:data:`CANDIDATES`); the augmentation protocol chooses one
per part on validation classes of the meta-train side, and a composition uses its parts'
chosen strengths. A free row is used two ways: on the fly (every classifier batch jittered
afresh) and as samples (``num`` jittered copies of the shots added at the mix ratio, exactly as
a generator's samples are). Other families (e.g. colour transforms) join by adding their part
here and its parameters to :class:`~metagan.transforms.Jitter`.
"""

from __future__ import annotations

from metagan.errors import ConfigError
from metagan.transforms import FAMILIES, Jitter

# candidate strengths of each part, chosen on validation classes (units: metagan.transforms)
CANDIDATES: dict[str, tuple[float, ...]] = {
    "affine": (0.5, 1.0, 1.5),
    "elastic": (1.0, 2.0, 3.0),
    "stroke": (0.5, 1.0),
}
# the strengths used before (or without) a choice: `affine` 1.0 is the classic affine row
DEFAULT: dict[str, float] = {"affine": 1.0, "elastic": 2.0, "stroke": 0.5}
ROWS = ("affine", "elastic", "stroke", "affine+elastic+stroke")  # `metagan eval`'s default


def parts(name: str) -> tuple[str, ...]:
    """``"affine+elastic"`` -> ("affine", "elastic"); a one-line error for anything else."""
    got = tuple(name.split("+"))
    if not name or any(p not in FAMILIES for p in got) or len(set(got)) != len(got):
        raise ConfigError(
            f"unknown free reference {name!r}: use one of {', '.join(FAMILIES)} or a "
            "'+'-joined composition of them (e.g. affine+elastic+stroke)"
        )
    return got


def jitter(name: str, strengths: dict[str, float], background: float) -> Jitter:
    """The free row ``name`` at the given strengths of its parts."""
    return Jitter(**{p: strengths[p] for p in parts(name)}, background=background)


def check_candidates(candidates: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
    """Candidate strengths per part: every part named, every value valid for that part."""
    out = {}
    for part in FAMILIES:
        vals = tuple(candidates.get(part, ()))
        if not vals:
            raise ConfigError(f"{part} needs at least one candidate strength")
        for v in vals:
            Jitter(**{part: v})  # validates the range, with the one-line error
        out[part] = vals
    unknown = sorted(set(candidates) - set(FAMILIES))
    if unknown:
        parts(unknown[0])
    return out


def background_of(invert: bool, channels: int = 1) -> float | None:
    """The paper's value in [-1, 1]: white paper is +1, or -1 when the images are inverted;
    None for colour photographs (3 channels: no paper, the border is repeated)."""
    if channels == 3:
        return None
    return -1.0 if invert else 1.0


def background_of_data(data: dict) -> float | None:
    """:func:`background_of` for a ``[data]`` config section (before colour: one channel)."""
    return background_of(bool(data["invert"]), int(data.get("channels") or 1))


def parse_strengths(items: list[str]) -> dict[str, tuple[float, ...]]:
    """``["elastic=1,2", ...]`` (the ``--strength`` flag) -> {"elastic": (1.0, 2.0), ...}."""
    out = {}
    for item in items:
        part, sep, vals = item.partition("=")
        if not sep or part not in FAMILIES:
            raise ConfigError(
                f"--strength {item!r}: expected PART=S[,S...] with PART one of "
                f"{', '.join(FAMILIES)} (e.g. elastic=1,2,3)"
            )
        try:
            out[part] = tuple(float(v) for v in vals.split(","))
        except ValueError:
            raise ConfigError(f"--strength {item!r}: strengths must be numbers") from None
    return out
