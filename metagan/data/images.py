"""Images in and out: Pillow images <-> ``(N, C, S, S)`` tensors in [-1, 1], PNG grids, image folders.

Two kinds of data, told apart by the channel count C:

* C = 1, strokes (Omniglot's convention: dark strokes on a white background). Images are
  converted to grayscale, PADDED to a square with their border's colour (every stroke kept,
  its shape unchanged) and resized. With ``invert=True`` the strokes are bright (+1) on a dark
  background (-1), which is what most GAN code for Omniglot uses, because a generator then
  starts from an almost all -1 image instead of having to paint a white page.
* C = 3, colour photographs. Images are converted to RGB (transparency onto white),
  CENTRE-CROPPED to a square and resized to S x S (what torchvision's
  ``Resize(S) + CenterCrop(S)`` and the few-shot photo literature do: the object fills the
  frame, and there are no padded bands of a varying width that a generator would have to
  learn to paint; the price is the margins of the longer side). They are never inverted.

Models see ``(N, C, S, S)`` float32 tensors in [-1, 1]. Resizing is done by Pillow (Lanczos,
antialiased when shrinking) in 8 bits per channel, so an image cache can hold ``uint8``
without losing anything.
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
from PIL import Image, UnidentifiedImageError

from metagan.errors import ConfigError, DataError

# Sizes the built-in architectures are written for; 28 is the classic Omniglot/MNIST size.
IMAGE_SIZES = (28, 32, 64, 128)
CHANNELS = (1, 3)  # grayscale (strokes) or RGB (photographs)
# modes whose pixels carry no colour; every other mode is colour ("P" is judged by its palette)
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
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


def check_channels(channels: int, what: str = "channels") -> int:
    """``channels`` if it is one of :data:`CHANNELS`, else a ConfigError naming the valid ones."""
    if isinstance(channels, bool) or not isinstance(channels, int) or channels not in CHANNELS:
        raise ConfigError(f"{what} {channels!r} is not supported; valid: 1 (grayscale), 3 (RGB)")
    return channels


def is_colour(img: Image.Image) -> bool:
    """Whether ``img``'s mode carries colour, read from the header (no pixels are decoded).

    An RGB file is colour even when its pixels happen to be gray; a palette image is colour
    unless every palette entry is gray.
    """
    if img.mode in GRAY_MODES:
        return False
    if img.mode in ("P", "PA") and img.palette is not None:
        try:
            raw = img.palette.tobytes()
        except (ValueError, OSError):
            return True
        if img.palette.mode == "RGB":
            return any(
                raw[i] != raw[i + 1] or raw[i] != raw[i + 2] for i in range(0, len(raw) - 2, 3)
            )
    return True


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` in mode "RGB"; transparent pixels become white, high-bit-depth gray is scaled
    to 8 bits first (as :func:`to_gray` does)."""
    if img.mode == "RGB":
        return img
    if img.mode in GRAY_MODES and img.mode not in ("LA", "La"):
        return to_gray(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(page, rgba).convert("RGB")
    return img.convert("RGB")


def centre_crop(img: Image.Image, size: int) -> Image.Image:
    """The centre square of ``img`` (side: its shorter side; where the margins are odd the
    extra pixel is left on the right or bottom), resized to ``size`` x ``size``.

    The same image as resizing the shorter side to ``size`` and cropping the centre, but
    cropped first on whole pixels, so nothing outside the square bleeds in.
    """
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if side != w or side != h:
        img = img.crop((left, top, left + side, top + side))
    if side != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


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


def to_pixels(images: Sequence[Image.Image], size: int, channels: int) -> np.ndarray:
    """Images as a ``(N, C, size, size)`` uint8 array: C = 1 as :func:`to_uint8` (grayscale,
    padded, resized; exactly what one-channel data always got), C = 3 RGB, centre-cropped."""
    if check_channels(channels) == 1:
        return to_uint8(images, size)[:, None]
    check_image_size(size)
    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = np.asarray(centre_crop(to_rgb(img), size)).transpose(2, 0, 1)
    return out


def uint8_to_tensor(pixels: torch.Tensor | np.ndarray, *, invert: bool) -> torch.Tensor:
    """``(..., H, W)`` uint8 pixels -> float32 in [-1, 1] (white -> +1, or -1 when inverted)."""
    x = torch.as_tensor(pixels).to(torch.float32) * (2.0 / 255.0) - 1.0
    return -x if invert else x


def check_invert(channels: int, invert: bool) -> None:
    """Colour images are never inverted: a ValueError for ``invert`` with 3 channels."""
    if invert and channels == 3:
        raise ValueError("colour images are never inverted; invert applies to 1-channel strokes")


def to_tensor(
    images: list[Image.Image], size: int, *, invert: bool, channels: int = 1
) -> torch.Tensor:
    """Pillow images -> ``(N, C, size, size)`` float32 in [-1, 1].

    :param images: any sizes and modes; see the module docstring for how each C converts them.
    :param size: one of :data:`IMAGE_SIZES`.
    :param invert: make strokes bright: white background -> -1, dark strokes -> +1 (C = 1 only).
    :param channels: 1 (grayscale) or 3 (RGB).
    """
    check_invert(channels, invert)
    pixels = to_pixels(images, size, channels)  # (N, C, S, S)
    return uint8_to_tensor(pixels, invert=invert)


def _check_images(x: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in CHANNELS:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must be a (N, 1, H, W) or (N, 3, H, W) tensor, got {shape}")
    return x


def to_pil(x: torch.Tensor, *, invert: bool) -> list[Image.Image]:
    """``(N, C, H, W)`` values in [-1, 1] -> N Pillow images, mode "L" (C = 1) or "RGB"
    (C = 3); values are clamped.

    :param invert: the tensor has bright strokes (as made by ``to_tensor(..., invert=True)``);
        the images get dark strokes on white again.
    """
    x = _check_images(x, "to_pil's input").detach().to("cpu", torch.float32)
    check_invert(x.shape[1], invert)
    if invert:
        x = -x
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (N, C, H, W)
    if x.shape[1] == 3:
        return [Image.fromarray(p.permute(1, 2, 0).numpy(), mode="RGB") for p in pixels]
    return [Image.fromarray(p[0].numpy(), mode="L") for p in pixels]


def list_image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, hidden files skipped), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def open_image(path: Path | str, data: bytes | None = None, *, gray: bool = True) -> Image.Image:
    """Decode one image file fully, as mode "L" (``gray=False``: in its own mode, for the
    caller to convert, e.g. by :func:`to_pixels`); a DataError names the file if that fails.

    ``data``: the file's bytes when they do not come from ``path`` itself (a zip member; then
    ``path`` only names it). Images beyond Pillow's pixel limit are refused as possible
    decompression bombs, before their pixels are decoded.
    """
    with _reading(path):
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            check_min_size(path, img.size)
            img.load()
            return to_gray(img).copy() if gray else img.copy()


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


def image_is_colour(path: Path) -> bool:
    """Whether the file holds a colour image (:func:`is_colour`), from its header."""
    with _reading(path):
        with Image.open(path) as img:
            return is_colour(img)


def channels_of_files(files: Sequence[Path]) -> int:
    """3 if any of ``files`` is a colour image, else 1 (headers only, nothing decoded)."""
    return 3 if any(image_is_colour(f) for f in files) else 1


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


def read_image_dir(path: str | os.PathLike, *, gray: bool = True) -> list[Image.Image]:
    """The user's own K images: every png/jpg/jpeg/bmp/gif in ``path``, sorted by file name,
    of any sizes (they are resized when converted to tensors).

    Returns fully decoded mode "L" images (transparency composited onto white; ``gray=False``:
    each in its own mode). Raises a one-line DataError for a missing folder, a folder without
    images (naming the valid extensions) and a file that cannot be decoded (naming it).
    """
    return [open_image(f, gray=gray) for f in image_files_or_error(path)]
