"""Fetch the official Omniglot zips, verified by md5 and written atomically (the omniglot
dataset plugin's ``download``).

``metagan data download omniglot --root DIR`` calls :meth:`OmniglotDataset.download`, which
calls :func:`download_omniglot`. Each zip is
streamed into a temporary file beside its target while its md5 is computed; only a file whose
md5 matches is renamed into place, so an interrupted or corrupted download never leaves a
half-written ``.zip`` for :class:`OmniglotDataset` to trip over. Files that are already there
with the right checksum are not fetched again.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from metagan.errors import ConfigError, DataError
from metagan.io import atomic_write

OMNIGLOT_URL = "https://github.com/brendenlake/omniglot/raw/master/python/{split}.zip"

# md5 of each official zip. images_background_small2's checksum is not published anywhere we
# could check, so that file is verified by opening it as a zip and listing its images instead.
OMNIGLOT_MD5: dict[str, str | None] = {
    "images_background": "68d2efa1b9178cc56df9314c21c6e718",
    "images_evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
    "images_background_small1": "e704a628b5459e08445c13499850abc4",
    "images_background_small2": None,
}

_CHUNK = 1 << 20
# The opener, looked up at call time so that tests can serve local files instead.
_urlopen = urllib.request.urlopen


def md5_of(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _zip_lists_images(path: Path, split: str) -> str | None:
    """None if ``path`` is a readable zip holding ``<split>/.../*.png``, else what is wrong."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"not a readable zip file ({exc})"
    if not any(n.startswith(f"{split}/") and n.endswith(".png") for n in names):
        return f"a zip without any {split}/.../*.png images"
    return None


def _verified(path: Path, split: str) -> bool:
    expected = OMNIGLOT_MD5[split]
    if expected is not None:
        return md5_of(path) == expected
    return _zip_lists_images(path, split) is None


def _fetch(url: str, target: Path, split: str, progress: Callable[[int, int], None] | None):
    expected = OMNIGLOT_MD5[split]
    try:
        response = _urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {url}: {reason}; check the network, or fetch the file by hand "
            f"into {str(target.parent)!r}"
        ) from None
    h = hashlib.md5()
    with response, atomic_write(target, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0) if response.headers else 0
        done = 0
        while True:
            try:
                chunk = response.read(_CHUNK)
            except (urllib.error.URLError, OSError) as exc:
                raise DataError(f"download of {url} broke off after {done} bytes: {exc}") from None
            if not chunk:
                break
            f.write(chunk)
            h.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        got = h.hexdigest()
        if expected is not None and got != expected:
            # Raising inside atomic_write deletes the temporary file: nothing is left behind.
            raise DataError(
                f"checksum mismatch for {target.name} from {url}: expected md5 {expected}, "
                f"got {got}; the download was discarded, try again"
            )
    if expected is None:  # no known md5: the renamed file must at least be Omniglot's zip
        problem = _zip_lists_images(target, split)
        if problem is not None:
            target.unlink(missing_ok=True)
            raise DataError(
                f"{target.name} from {url} is {problem}; the download was discarded, try again"
            )


def download_omniglot(
    dest: Path,
    splits: Sequence[str] = ("images_background", "images_evaluation"),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Download Omniglot zips into ``dest``; return their paths, in the order of ``splits``.

    :param dest: the folder to put ``<split>.zip`` in (created if needed); pass the same folder
        as ``root`` to the omniglot dataset afterwards.
    :param splits: any of ``images_background``, ``images_evaluation``,
        ``images_background_small1``, ``images_background_small2``.
    :param progress: called as ``progress(bytes_done, bytes_total_or_0)`` while downloading.
    """
    if isinstance(splits, str):
        splits = (splits,)
    for split in splits:
        if split not in OMNIGLOT_MD5:
            raise ConfigError(
                f"unknown Omniglot split {split!r}; valid splits: {', '.join(OMNIGLOT_MD5)}"
            )
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise DataError(f"download destination {str(dest)!r} exists and is not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for split in splits:
        target = dest / f"{split}.zip"
        if not (target.is_file() and _verified(target, split)):
            _fetch(OMNIGLOT_URL.format(split=split), target, split, progress)
        out.append(target)
    return out
