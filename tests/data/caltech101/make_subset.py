"""Rebuild the colour test subset here from the 80-class Caltech-101 subset in ../shared.

    python tests/data/caltech101/make_subset.py ../shared/caltech101

Keeps the first IMAGES photographs (by file name) of each of CLASSES, downscaled with Pillow
(Lanczos) so that the LONGER side is SIDE pixels (aspect ratio kept, so the tests still see
photographs of different sizes and shapes) and re-encoded as JPEG at quality 90. These are
the only changes; see README.md beside this file for the source and licence.
"""

import sys
from pathlib import Path

from PIL import Image

CLASSES = ("dalmatian", "flamingo", "stop_sign", "strawberry")
IMAGES = 8
SIDE = 72
HERE = Path(__file__).resolve().parent


def main(src: str) -> None:
    root = Path(src)
    for name in CLASSES:
        out = HERE / name
        out.mkdir(exist_ok=True)
        for f in sorted((root / name).glob("*.jpg"))[:IMAGES]:
            with Image.open(f) as img:
                img = img.convert("RGB")
                scale = SIDE / max(img.size)
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                img.resize(size, Image.Resampling.LANCZOS).save(out / f.name, quality=90)
    total = sum(p.stat().st_size for p in HERE.rglob("*.jpg"))
    print(f"{len(CLASSES)} classes x {IMAGES} images, {total} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
