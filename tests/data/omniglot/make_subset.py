"""Rebuild images_background_small1.zip here: the test subset of the official small1 zip.

    python tests/data/omniglot/make_subset.py ../shared/omniglot/images_background_small1.zip

Keeps the first CHARACTERS characters of every alphabet with all their drawings, in the
official zip's order and layout (``images_background_small1/<Alphabet>/character<NN>/*.png``,
directory entries included), with each member's bytes and timestamp unchanged.
"""

import sys
import zipfile
from pathlib import Path

CHARACTERS = 6
HERE = Path(__file__).resolve().parent


def keep(name: str) -> bool:
    parts = name.rstrip("/").split("/")
    return len(parts) < 3 or int(parts[2].removeprefix("character")) <= CHARACTERS


def main(src: str) -> None:
    out = HERE / Path(src).name
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            if keep(info.filename):
                zout.writestr(info, zin.read(info), compress_type=info.compress_type)
    print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1])
