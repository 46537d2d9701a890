"""Images in and out: Pillow images <-> ``(N, 1, S, S)`` tensors in [-1, 1], PNG grids, image folders.

Every dataset hands over Pillow images in mode "L" with dark strokes on a white background
(Omniglot's convention). Models see ``(N, 1, S, S)`` float32 tensors in [-1, 1]; with
``invert=True`` the strokes are bright (+1) on a dark background (-1), which is what most GAN
code for Omniglot uses, because a generator then starts from an almost all -1 image instead of
having to paint a white page. Resizing is done by Pillow (Lanczos, antialiased when shrinking)
on 8-bit grayscale, so an image cache can hold ``uint8`` without losing anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from metagan.errors import ConfigError, DataError
from metagan.io import atomic_write

# Sizes the built-in architectures are written for; 28 is the classic Omniglot/MNIST size.
IMAGE_SIZES = (28, 32, 64)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# The smallest image side that still carries a drawing: smaller images (a 1x1 pixel) are
# refused, not blown up into a blank sample of nothing.
MIN_IMAGE_SIDE = 8
# Images of more pixels than Pillow's limit (Image.MAX_IMAGE_PIXELS, about 89 million) are
# refused as possible decompression bombs; this variable raises the limit for real large
# images (an integer number of pixels, or "none" for no limit).
MAX_PIXELS_ENV = "METAGAN_MAX_IMAGE_PIXELS"


def check_image_size(size: int) -> int:
    """``size`` if it is one of :data:`IMAGE_SIZES`, else a ConfigError naming the valid ones."""
    if isinstance(size, bool) or not isinstance(size, int) or size not in IMAGE_SIZES:
        valid = ", ".join(str(s) for s in IMAGE_SIZES)
        raise ConfigError(f"image size {size!r} is not supported; valid sizes are {valid}")
    return size


def to_gray(img: Image.Image) -> Image.Image:
    """``img`` in mode "L"; transparent pixels become white (the background), not black.

    16-bit and other high-bit-depth grayscale images are scaled to 8 bits (Pillow's own
    conversion clips them, which turns a 16-bit drawing white).
    """
    if img.mode == "L":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            full = 65535.0
        elif img.mode == "F":
            full = 1.0 if a.size and a.max() <= 1.0 else 255.0
        else:  # 32-bit integers: 8-, 16- or 32-bit data, judged by the largest value
            top = a.max() if a.size else 0
            full = 255.0 if top <= 255 else 65535.0 if top <= 65535 else 4294967295.0
        return Image.fromarray(np.clip(np.rint(a * (255.0 / full)), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba).convert("L")
    return img.convert("L")


def _square(img: Image.Image) -> Image.Image:
    """Pad a non-square image to a square, centred, with the colour of its border.

    Padding (rather than stretching or cropping) keeps the strokes' shape and keeps every
    stroke; the border's median is the background whichever way round the image is drawn.
    """
    w, h = img.size
    if w == h:
        return img
    a = np.asarray(img)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    side = max(w, h)
    out = Image.new("L", (side, side), int(np.median(border)))
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def to_uint8(images: Sequence[Image.Image], size: int) -> np.ndarray:
    """Grayscale, squared and resized images as a ``(N, size, size)`` uint8 array (255 = white)."""
    check_image_size(size)
    out = np.empty((len(images), size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        g = _square(to_gray(img))
        if g.size != (size, size):
            g = g.resize((size, size), Image.Resampling.LANCZOS)
        out[i] = np.asarray(g)
    return out


def uint8_to_tensor(pixels: torch.Tensor | np.ndarray, *, invert: bool) -> torch.Tensor:
    """``(..., H, W)`` uint8 pixels -> float32 in [-1, 1] (white -> +1, or -1 when inverted)."""
    x = torch.as_tensor(pixels).to(torch.float32) * (2.0 / 255.0) - 1.0
    return -x if invert else x


def to_tensor(images: list[Image.Image], size: int, *, invert: bool) -> torch.Tensor:
    """Pillow images -> ``(N, 1, size, size)`` float32 in [-1, 1].

    :param images: any sizes and modes; converted to grayscale, padded to square, resized.
    :param size: one of :data:`IMAGE_SIZES`.
    :param invert: make strokes bright: white background -> -1, dark strokes -> +1.
    """
    pixels = to_uint8(images, size)  # (N, S, S)
    return uint8_to_tensor(pixels, invert=invert).unsqueeze(1)  # (N, 1, S, S)


def _check_images(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a (N, 1, H, W) tensor, got {shape}")
    return x


def to_pil(x: torch.Tensor, *, invert: bool) -> list[Image.Image]:
    """``(N, 1, H, W)`` values in [-1, 1] -> N Pillow images, mode "L" (values are clamped).

    :param invert: the tensor has bright strokes (as made by ``to_tensor(..., invert=True)``);
        the images get dark strokes on white again.
    """
    x = _check_images(x, "to_pil's input").detach().to("cpu", torch.float32)
    if invert:
        x = -x
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, 1, H, W)
    return [Image.fromarray(p[0].numpy(), mode="L") for p in pixels]


def save_grid(
    rows: list[torch.Tensor],
    path: str | os.PathLike,
    *,
    invert: bool,
    pad: int = 2,
    split: int = 0,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write a PNG grid with one row per ``(N, 1, H, W)`` tensor, atomically.

    Rows may hold different numbers of images (shorter rows are left blank); all images must
    share one H x W. The padding is mid-grey so that cells stay visible with and without
    ``invert``.

    :param split: the first ``split`` images of every row (the shots) are set apart from the
        rest (the samples) by a wider gap with a black line down its middle; 0: no gap.
    :param labels: one text per row (which class it is), written in a white column on the left.
    """
    if not rows:
        raise ValueError("save_grid needs at least one row of images")
    rows = [_check_images(r, f"row {i} of save_grid") for i, r in enumerate(rows)]
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"save_grid got {len(labels)} labels for {len(rows)} rows")
    h, w = rows[0].shape[-2:]
    for i, r in enumerate(rows):
        if r.shape[-2:] != (h, w):
            raise ValueError(
                f"save_grid rows must share one image size: row 0 is {h}x{w}, "
                f"row {i} is {r.shape[-2]}x{r.shape[-1]}"
            )
    cols = max(1, max(r.shape[0] for r in rows))
    gap = 4 * pad + 1 if 0 < split < cols else 0  # extra width between shots and samples
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    left = 0
    if labels is not None:
        left = max(int(draw.textlength(str(t), font=font)) for t in labels) + 2 * pad + 2
    width = left + pad + cols * (w + pad) + gap
    grid = np.full((pad + len(rows) * (h + pad), width), 128, dtype=np.uint8)
    if left:
        grid[:, :left] = 255
    if gap:
        x_line = left + pad + split * (w + pad) + gap // 2 - 1
        grid[:, x_line] = 0
    for i, r in enumerate(rows):
        for j, img in enumerate(to_pil(r, invert=invert)):
            y = pad + i * (h + pad)
            x = left + pad + j * (w + pad) + (gap if gap and j >= split else 0)
            grid[y : y + h, x : x + w] = np.asarray(img)
    out = Image.fromarray(grid, mode="L")
    if labels is not None:
        pen = ImageDraw.Draw(out)
        for i, text in enumerate(labels):
            y = pad + i * (h + pad) + max(0, (h - 11) // 2)
            pen.text((pad, y), str(text), fill=0, font=font)
    path = Path(path)
    with atomic_write(path, "wb") as f:
        out.save(f, format="PNG")
    return path


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, hidden files skipped), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def open_image(path: Path | str, data: bytes | None = None) -> Image.Image:
    """Decode one image file fully, as mode "L"; a DataError names the file if that fails.

    ``data``: the file's bytes when they do not come from ``path`` itself (a zip member; then
    ``path`` only names it). Images beyond Pillow's pixel limit are refused as possible
    decompression bombs, before their pixels are decoded.
    """
    with _reading(path):
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            check_min_size(path, img.size)
            img.load()
            return to_gray(img).copy()


def image_size_of(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels."""
    with _reading(path):
        with Image.open(path) as img:
            return check_min_size(path, img.size)


def check_min_size(path, size: tuple[int, int]) -> tuple[int, int]:
    """``size`` (width, height) of image ``path``, or a DataError if a side is below
    :data:`MIN_IMAGE_SIDE`."""
    if min(size) < MIN_IMAGE_SIDE:
        raise DataError(
            f"image {str(path)!r} is {size[0]}x{size[1]} pixels, too small to hold a drawing; "
            f"images must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}"
        )
    return size


def max_image_pixels() -> int | None:
    """The pixel limit above which images are refused as possible decompression bombs:
    ``$METAGAN_MAX_IMAGE_PIXELS`` when set ("none": no limit), else Pillow's own
    (``PIL.Image.MAX_IMAGE_PIXELS``)."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return Image.MAX_IMAGE_PIXELS
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{MAX_PIXELS_ENV} must be a positive number of pixels or 'none', got {text!r}"
        )
    return value


@contextlib.contextmanager
def _reading(path):
    """Turn every failure to read image ``path`` into a one-line DataError naming it; Pillow's
    decompression-bomb warning is an error here (never warn and carry on), at the limit of
    :func:`max_image_pixels`."""
    limit, saved = max_image_pixels(), Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = limit
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"image {str(path)!r} is refused as a possible decompression bomb: {_first(exc)}; "
            f"if it is a real image, allow it with {MAX_PIXELS_ENV}=N (pixels) or =none"
        ) from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {str(path)!r}: {_first(exc)}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def check_same_size(files: Sequence[Path], sizes: Sequence[tuple[int, int]]) -> None:
    """A DataError naming two files of different sizes, if there are any."""
    for f, s in zip(files, sizes):
        if s != sizes[0]:
            raise DataError(
                f"images must all have one size: {str(files[0])!r} is {sizes[0][0]}x{sizes[0][1]} "
                f"but {str(f)!r} is {s[0]}x{s[1]}; resize them to one size"
            )


def image_files_or_error(folder: str | os.PathLike, what: str = "image folder") -> list[Path]:
    """The image files of ``folder``; a DataError if it is missing, not a folder or has none."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise DataError(f"{what} {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise DataError(f"{what} {str(folder)!r} is not a folder; pass a folder of images")
    files = list_image_files(folder)
    if not files:
        others = sum(1 for p in folder.iterdir() if not p.name.startswith("."))
        valid = ", ".join(IMAGE_EXTENSIONS)
        raise DataError(
            f"no images in {what} {str(folder)!r} ({others} other entries); "
            f"valid image files end in {valid}"
        )
    return files


def read_image_dir(path: str | os.PathLike) -> list[Image.Image]:
    """The user's own K images: every png/jpg/jpeg/bmp/gif in ``path``, sorted by file name.

    Returns fully decoded mode "L" images (transparency composited onto white). Raises a
    one-line DataError for a missing folder, a folder without images (naming the valid
    extensions), a file that cannot be decoded (naming it) and images of different sizes
    (naming two files and their sizes).
    """
    files = image_files_or_error(path)
    images = [open_image(f) for f in files]
    check_same_size(files, [im.size for im in images])
    return images
