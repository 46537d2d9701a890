"""Atomic file writes: a temporary file in the target's folder, then ``os.replace``.

A crash, a Ctrl-C or an exception while writing never leaves a half-written checkpoint, grid
or JSON file behind: the target either keeps its old content or gets the whole new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from metagan.errors import ConfigError, shorten

# mkstemp's names: ".<target>." + 8 characters + ".tmp"; only such files are ever removed
_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    The file gets the permissions of any ordinary new file (``0666`` less the umask), not the
    ``0600`` that temporary files are created with.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            raise _named(exc, path) from None
        raise


@contextlib.contextmanager
def named_errors(path: str | os.PathLike) -> Iterator[None]:
    """An OSError inside that names no file (a write to an open file on a full disk says only
    "No space left on device") is raised again naming ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise _named(exc, path) from None
        raise


def _named(exc: OSError, path) -> OSError:
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that interrupted atomic writes (a kill -9, a power cut) left
    in ``folder``; called when a run starts, so they do not pile up. Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for p in Path(folder).iterdir():
            if _TEMP.match(p.name) and p.is_file():
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


_umask_lock = threading.Lock()


def _umask() -> int:
    """The process's umask (reading it means setting it; the lock keeps threads consistent)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike, what: str, *, folder: bool = True) -> Path:
    """Refuse, before any work, an output path that cannot be written: a file where a folder is
    wanted (or the reverse), a path under a file, a read-only or virtual place such as /proc.
    Nothing is created: the nearest existing folder gets a probe file, removed at once."""
    path = Path(path)
    try:
        return _check_writable(path, what, folder)
    except OSError as exc:  # a name too long, a loop of links: the path itself is unusable
        raise ConfigError(
            f"{what} {shorten(str(path))} cannot be used: {exc.strerror or exc}"
        ) from None


def _check_writable(path: Path, what: str, folder: bool) -> Path:
    base = path
    while not base.exists() and base != base.parent:
        if base.is_symlink():
            raise ConfigError(
                f"{what} {path}: {base} is a symbolic link to {os.readlink(base)}, which does "
                "not exist; create its target or give another path"
            )
        base = base.parent
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a folder; give a folder path")
    if not folder and path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file path, e.g. {path / 'out.pt'}")
    if not folder and path.exists() and not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file; give a file path")
    base = path if folder else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise ConfigError(f"{what} {path} is under {base}, which is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".metagan-probe.", suffix=".tmp", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"{what} {path} cannot be written: {base}: {exc.strerror or exc}"
        ) from None
    return path
