"""Multi-process and multi-node meta-training on torch.distributed, launched by torchrun.

``torchrun --nproc-per-node N -m metagan train ...`` starts N copies of the ordinary train
command; this module is what makes them one run. Without torchrun (no ``WORLD_SIZE`` in the
environment, or a world of 1) nothing here changes the single-process path.

How a meta-step is split (:class:`metagan.stepping.Sharded`, :func:`metagan.stepping.sharded_step`):

* every rank draws the SAME meta-batch of T tasks and its noise, from the same seeded
  TaskSampler and noise generator as a single process would (cheap: image lookups and randn);
* rank r keeps tasks ``r::W`` (disjoint shards that cover the batch) and runs the algorithm on
  them (the expensive part: the inner loop and the meta-gradients);
* the meta-gradients, weighted by each rank's number of kept tasks, are summed across ranks
  (one all-reduce of the flat buffers) and divided by the total: exactly the mean over all
  kept tasks that one process computes, so every rank applies the same Adam step and the
  meta-optimizer states stay identical.

Because the task and noise streams do not depend on the world size, a checkpoint written with
W processes resumes with any other W, and a run is reproducible for a seed (and, up to float
summation order, the same as a single-process run).

Rank 0 alone writes the checkpoint, metrics, config and sample grids. After a torchrun restart
(``--max-restarts``; ``TORCHELASTIC_RESTART_COUNT > 0``) every rank resumes from
``run.out/checkpoint.pt``, which rank 0 reads and broadcasts, and rank 0 cuts metrics.jsonl back
to the checkpoint's step so the redone steps are logged once.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from metagan import checkpoint
from metagan.config import Config, from_dict
from metagan.errors import CheckpointError, ConfigError, MetaganError
from metagan.session import Session


@dataclass(frozen=True)
class Context:
    """Where this process stands in the run: rank, world size and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restarts: int = 0  # TORCHELASTIC_RESTART_COUNT: how often torchrun has restarted the workers
    device: torch.device | None = None  # this rank's device; None = the config's (one process)
    backend: str | None = None  # "gloo" (cpu) or "nccl" (cuda); None = no process group

    @property
    def enabled(self) -> bool:
        """True when several processes share the meta-batch (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes files and logs."""
        return self.rank == 0

    def rank_config(self, cfg: Config) -> Config:
        """``cfg`` with ``run.device`` set to this rank's device (``cuda`` -> ``cuda:LOCAL_RANK``).

        Only the Session is built from it; checkpoints keep the user's config, so a run started
        on 8 GPUs resumes on one.
        """
        if self.device is None or self.device.type != "cuda":
            return cfg
        return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, device=str(self.device)))


def setup(cfg: Config) -> Context:
    """Read torchrun's environment and, for a world of more than one, join the process group.

    Backends: gloo when ``run.device`` is cpu, NCCL when it is cuda (each rank on
    ``cuda:LOCAL_RANK``). Calling it again in the same process returns the same context.
    """
    world = _env_int("WORLD_SIZE", 1)
    restarts = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    if world <= 1:
        return Context(restarts=restarts)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if cfg.meta.tasks < world:
        raise ConfigError(
            f"meta.tasks={cfg.meta.tasks} is smaller than the {world} processes, so some would get no task; "
            f"set meta.tasks >= {world} (a multiple of {world} balances the work)"
        )
    device = _rank_device(cfg.run.device, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        _init_process_group(backend, device, rank, world, restarts)
        atexit.register(_destroy)
        _stop_with_agent()
    return Context(rank, world, local_rank, restarts, device, backend)


def _stop_with_agent(poll_s: float = 1.0) -> None:
    """Exit when the torchrun agent that started this worker dies.

    A killed agent (``kill -9`` of torchrun, a lost SSH session) cannot stop its workers, which
    would train on as orphans, holding GPUs and writing to run.out. A daemon thread watches the
    parent process: when it changes (the worker was re-parented), the worker terminates itself.
    Checkpoints are written atomically, so stopping at any moment leaves a loadable one.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5.0)
        os._exit(143)  # SIGTERM was handled and ignored

    threading.Thread(target=watch, name="metagan-agent-watch", daemon=True).start()


def lost_peer(exc: BaseException) -> str | None:
    """The one line to report when ``exc`` is a collective that failed because another process
    of the run is gone (the torchrun agent was killed, a rank died): gloo and NCCL raise a
    RuntimeError with a multi-line C++ trace. None for any other error."""
    text = str(exc)
    lost = isinstance(exc, dist.DistError) or any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "gloo", "NCCL")
    )
    if not (lost and dist.is_initialized()):
        return None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = re.sub(r"^\[[^\]]*\]\s*", "", first).split(". ")[0]  # no C++ source location
    why = "the torchrun agent is gone" if os.getppid() != _PARENT[0] else "another process stopped"
    return (
        f"rank {dist.get_rank()} stopped: {why}, so the distributed run cannot go on "
        f"({first[:120]}); its checkpoints are written atomically: continue from run.out's "
        "checkpoint.pt with --resume"
    )


_PARENT = [os.getppid()]  # the process that started this one (torchrun's agent)


def _init_process_group(backend: str, device: torch.device, rank: int, world: int, restarts: int):
    """``init_process_group`` from torchrun's environment, safe after a restart.

    torchrun (torch >= 2.5) hosts one TCPStore in its agent for the whole job, and the process
    group's keys (each rank's gloo/NCCL address) of the killed attempt are still in it: after
    ``--max-restarts`` relaunches the workers they may read their peers' old addresses and
    fail or hang (pytorch/pytorch#135712). On one node every worker sees the same restart
    count, so the group's keys are put under ``attempt_<count>/``. Across nodes the agents'
    counts can differ; there the shared store must be switched off
    (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, which gives every attempt a fresh store).
    """
    device_id = device if device.type == "cuda" else None
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    if not (shared and restarts > 0):
        dist.init_process_group(backend, device_id=device_id)
        return
    if _env_int("GROUP_WORLD_SIZE", 1) > 1:
        raise ConfigError(
            "torchrun restarted the workers on several nodes while sharing its TCPStore, which still holds "
            "the killed attempt's addresses; launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
            "(see docs/distributed.md)"
        )
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
        timeout=timedelta(minutes=10),
    )  # fmt: skip
    prefixed = dist.PrefixStore(f"metagan/attempt_{restarts}/", store)
    dist.init_process_group(
        backend, store=prefixed, rank=rank, world_size=world, device_id=device_id
    )


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={text!r} must be an integer (is torchrun setting it?)"
        ) from None


def _rank_device(name: str, local_rank: int) -> torch.device:
    """cpu stays cpu; cuda becomes ``cuda:LOCAL_RANK`` (or cuda:0 where each process sees one GPU)."""
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"run.device {name!r} is not a device; use cpu or cuda") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ConfigError(
            f"distributed training runs on cpu (gloo) or cuda (NCCL), not run.device={name}"
        )
    if dev.index is not None:
        raise ConfigError(
            f"run.device={name} pins one GPU, but under torchrun each process uses cuda:LOCAL_RANK; set run.device=cuda"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            "run.device is cuda but no CUDA GPU is available to this torch; use run.device=cpu"
        )
    count = torch.cuda.device_count()
    if count == 1:  # e.g. SLURM binding one GPU to each process
        return torch.device("cuda", 0)
    if local_rank >= count:
        exc = ConfigError(
            f"LOCAL_RANK {local_rank} has no GPU of its own: this node shows {count}; "
            f"start at most {count} processes per node (--nproc-per-node)"
        )
        exc.rank_specific = True  # not every rank meets it: printed by the ranks that do
        raise exc
    return torch.device("cuda", local_rank)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# -- start and restart -------------------------------------------------------------------------
def rank_session(ctx: Context, cfg: Config, session: Session | None = None) -> Session:
    """The run's Session on this rank's device: ``session`` itself when it is already there,
    otherwise one built anew from the same plugin registries (cuda -> cuda:LOCAL_RANK)."""
    local = ctx.rank_config(cfg)
    if session is None:
        return Session(local)
    if local is cfg or session.device == torch.device(local.run.device):
        return session
    return Session(local, session.registries)


def load_checkpoint(
    ctx: Context, cfg: Config, resume: str | Path | None, latest: Path
) -> tuple[dict | None, Path | None]:
    """The checkpoint this process starts from, and its path (``None, None``: a fresh start).

    ``resume`` (``--resume``) as given, except after a torchrun restart: then ``latest``
    (``run.out/checkpoint.pt``) when it exists and was written with this very config (a stale
    checkpoint of another run in the same folder is ignored). With several processes rank 0
    reads it and broadcasts it, so every rank starts from the same bytes even where a shared
    filesystem serves ranks stale copies; a bad checkpoint fails on every rank with rank 0's
    one-line message.
    """
    if not ctx.enabled:
        return _start(ctx, cfg, resume, latest)
    payload: list = [None]
    if ctx.is_main:
        try:
            ckpt, path = _start(ctx, cfg, resume, latest)
            payload = [(None if path is None else str(path), ckpt, None)]
        except MetaganError as exc:
            payload = [(None, None, str(exc))]
    dist.broadcast_object_list(payload, src=0)
    path, ckpt, error = payload[0]
    if error is not None:
        raise CheckpointError(error)
    return ckpt, None if path is None else Path(path)


def _start(ctx: Context, cfg: Config, resume, latest: Path) -> tuple[dict | None, Path | None]:
    if ctx.restarts > 0 and latest.is_file():
        try:
            ckpt = checkpoint.load(latest)
            if from_dict(ckpt["config"]) == cfg:
                return ckpt, latest
        except MetaganError:
            pass  # unreadable or another config: start as launched
    if resume is None:
        return None, None
    return checkpoint.load(resume), Path(resume)


def on_main(ctx: Context, fn):
    """``fn()`` on rank 0 alone (None on the other ranks). A MetaganError there is raised on
    every rank, so all stop together on rank 0's one-line message instead of waiting for it in
    a collective (e.g. run.out is held by another run: :func:`metagan.rundir.claim`)."""
    if not ctx.enabled:
        return fn()
    result, error = None, None
    if ctx.is_main:
        try:
            result = fn()
        except MetaganError as exc:
            error = exc
    payload = [None if error is None else str(error)]
    dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    if payload[0] is not None:
        raise ConfigError(payload[0])
    return result


def broadcast_params(ctx: Context, params: dict[str, Tensor]) -> None:
    """Copy rank 0's meta-parameters to every rank (identical already when all start from the
    same seed or checkpoint; this makes it so whatever the hardware's initialisation does)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for p in params.values():
            dist.broadcast(p.data, src=0)
