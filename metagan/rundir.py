"""A run folder belongs to one run.

* **A lock while it runs.** A training run holds an OS lock (``flock``) on
  ``run.out/.metagan.lock``, a file that names its holder (pid, host, start time, command). A
  second run on the folder is refused in one line naming that holder. The kernel drops the lock
  when the holder ends, however it ends (``kill -9``, a power cut), so a killed run never leaves
  a lock that blocks the next one; a run that ends normally removes the file.
* **No silent overwrite.** A folder that holds a run (``checkpoint.pt``, ``config.toml`` or
  ``metrics.jsonl``) is written by a new run only when that run continues it (``--resume`` of
  the folder's own checkpoint, or a torchrun restart) or when the user asks for ``--overwrite``:
  then the old run's files are removed before anything is written, so the folder never mixes
  two runs' checkpoints, metrics or sample grids. ``--overwrite`` never takes a folder from a
  run that is still running.

Files of the user's own in the folder are left alone; only a run's files make it a run's.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from metagan.errors import ConfigError, shorten
from metagan.io import check_writable

LOCK = ".metagan.lock"
RUN_FILES = ("checkpoint.pt", "config.toml", "metrics.jsonl")  # what makes a folder a run's
_GRIDS, _EVENTS = ("samples", "step_*.png"), ("tensorboard", "events.out.tfevents.*")


class Claim:
    """This process's hold on a run folder; :meth:`release` (or leaving ``with``) lets it go."""

    def __init__(self, out: Path, fd: int, created: bool):
        self.out, self.fd, self.created = out, fd, created

    def release(self) -> None:
        """Remove the lock file (while still holding the lock, so no other run can be holding
        a lock on it), drop the lock, and remove the folder if this claim created it and it is
        empty again."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            (self.out / LOCK).unlink()
        os.close(self.fd)
        self.fd = -1
        if self.created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only when empty

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(
    out: str | os.PathLike,
    *,
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    restarted: bool = False,
) -> Claim:
    """Take ``out`` for a training run, creating it if needed; a one-line ConfigError if another
    run holds it, or if it holds a run that this one neither continues nor may overwrite.

    :param resume: the checkpoint this run continues; it continues the folder's run only when
        it is the folder's own ``checkpoint.pt``.
    :param overwrite: replace a finished or foreign run in ``out`` (its files are removed here).
    :param restarted: a torchrun restart of the run that already wrote to ``out``.
    """
    out = check_writable(out, "run.out (--out)")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _lock(out)
    except OSError as exc:
        raise ConfigError(
            f"run.out {shorten(str(out))} cannot be used: {exc.strerror or exc}"
        ) from None
    held = Claim(out, fd, created)
    try:
        own = resume is not None and _same_file(Path(resume), out / "checkpoint.pt")
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found and not (own or restarted):
            if not overwrite:
                raise ConfigError(_holds_a_run(out, found, resume))
            _remove_run(out)
        _write_holder(fd)
    except OSError as exc:  # a full disk, a file of the old run that cannot be removed
        held.release()
        where = exc.filename or out / LOCK
        raise ConfigError(
            f"run.out {shorten(str(out))} cannot be used: {where}: {exc.strerror or exc}"
        ) from None
    except BaseException:
        held.release()
        raise
    return held


def _lock(out: Path) -> int:
    """An fd of ``out/.metagan.lock`` with an exclusive flock on it, or a ConfigError naming
    the process that holds it."""
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd) if exc.errno in (errno.EAGAIN, errno.EACCES) else None
            os.close(fd)
            if holder is None:
                raise ConfigError(
                    f"run.out {shorten(str(out))} cannot be locked for this run: "
                    f"{exc.strerror or exc} (its filesystem may not support locks)"
                ) from None
            raise ConfigError(
                f"run.out {shorten(str(out))} is in use by another metagan run ({holder}); wait "
                "for it to end, or train into another --out"
            ) from None
        # the holder before us may have removed the file between our open and our lock:
        # then we hold a lock on a file nobody else can see; try again with the current one
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _write_holder(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": shorten(" ".join(["metagan", *sys.argv[1:]]), 200),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


def _holder(fd: int) -> str:
    """Who holds the lock, from the lock file (a holder that has just started may not have
    written it yet: it is read again for up to a second)."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            info = None
        if isinstance(info, dict):
            return (
                f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: "
                f"{info.get('command', '')}"
            )
        time.sleep(0.05)
    return "a process that has just started"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _holds_a_run(out: Path, found: list[str], resume) -> str:
    where = shorten(str(out))
    files = ", ".join(found)
    if resume is not None:
        return (
            f"run.out {where} holds another run ({files}), and --resume continues "
            f"{shorten(str(resume))} into it; give another --out, or pass --overwrite to replace "
            "that run"
        )
    how = f"continue it with --resume {where}/checkpoint.pt, " if "checkpoint.pt" in found else ""
    return (
        f"run.out {where} already holds a run ({files}); {how}start afresh there with "
        "--overwrite (its files are replaced), or give another --out"
    )


def _remove_run(out: Path) -> None:
    """The files of the run in ``out`` (``--overwrite``): checkpoint, config, metrics, sample
    grids and TensorBoard events; folders of those are removed when that empties them."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for folder, pattern in (_GRIDS, _EVENTS):
        for p in (out / folder).glob(pattern):
            p.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (out / folder).rmdir()
