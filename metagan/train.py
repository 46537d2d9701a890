"""Meta-training: the outer loop around an algorithm, with checkpoints and lifecycle hooks.

Per meta-iteration: draw T tasks and their noise, ask the algorithm for meta-gradients
(batched over tasks), and let Adam apply them. Tasks that went non-finite are dropped and
counted; a step whose meta-gradient is non-finite is skipped; ``meta.max_skips`` consecutive
skips stop the run with its last good checkpoint untouched. Checkpoints hold the meta-parameters,
the optimizer and every RNG state, so ``--resume`` continues with exactly the losses the
uninterrupted run would have had.

Everything else a run does (progress bar, metrics.jsonl, TensorBoard, sample grids, the
memorisation score) is a plugin on the lifecycle hooks of :mod:`metagan.hookspecs`
(``metagan/loggers/``); how a meta-step's gradients are computed (plain, CUDA graph,
distributed) is chosen once (:mod:`metagan.stepping`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from metagan import checkpoint, distributed, rundir, stepping
from metagan.algorithm import ITERATIONS_MAX
from metagan.config import Config
from metagan.errors import CheckpointError, ConfigError, TrainingDiverged
from metagan.inner import Noise
from metagan.io import atomic_write, remove_stale_temps
from metagan.session import Session

CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainResult:
    step: int
    checkpoint: Path | None  # None: no checkpoint exists (nothing was written)
    grid: Path | None
    metrics: dict
    applied: int = 0  # meta-steps of this invocation whose update was applied
    skipped: int = 0  # meta-steps skipped: non-finite meta-gradients or a non-finite update
    dropped: int = 0  # tasks left out of meta-updates because they went non-finite

    def summary(self) -> str:
        """One line for the end of a run: what was applied, skipped and dropped."""
        return (
            f"meta-steps: {self.applied} applied, {self.skipped} skipped (non-finite); "
            f"tasks dropped (non-finite): {self.dropped}"
        )


class Trainer:
    def __init__(
        self,
        cfg: Config,
        session: Session | None = None,
        *,
        resume: str | Path | None = None,
        dist: distributed.Context | None = None,
        overwrite: bool = False,
    ):
        self.cfg = cfg
        self.overwrite = overwrite  # a run already in run.out may be replaced (rundir.claim)
        # -- distributed (torchrun, metagan/distributed.py; one process: the plain path) --------
        # ``dist``: the context the caller already set up (the CLI does it once, before it
        # builds the Session on this rank's device); None: set it up here.
        self.dist = distributed.setup(cfg) if dist is None else dist
        self.s = distributed.rank_session(self.dist, cfg, session)  # on cuda:LOCAL_RANK
        self.cfg = cfg = self.s.with_data(cfg)  # data.channels as the dataset has them
        self.out = Path(cfg.run.out)
        self.step = 0
        self.noise_gen = torch.Generator().manual_seed(cfg.run.seed)
        # --resume, or run.out's checkpoint after a torchrun restart; read by rank 0, broadcast
        ckpt, resume = distributed.load_checkpoint(self.dist, cfg, resume, self.out / CHECKPOINT)
        self.resumed_from = resume
        # -- end distributed ------------------------------------------------------------------
        self.params = self.s.load_params(resume, ckpt) if ckpt else self.s.init_params()
        distributed.broadcast_params(self.dist, self.params)
        self.opt = torch.optim.Adam(self.params.values(), lr=cfg.meta.lr, betas=cfg.meta.betas)
        self.train_tasks = self.s.sampler("train") if self.s.algorithm.trains else None
        # plain, CUDA graph or distributed: chosen once (metagan/stepping.py)
        self.stepper = stepping.choose(cfg, self.s, self.params, self.dist)
        self.log = print  # run(log=...) sets it; plugins write through it
        self.discard = False  # set when a failed run removes what it wrote (run_end hooks)
        self._stop: str | None = None  # a plugin's request_stop reason
        self.saved: Path | None = None  # the checkpoint this run wrote last (None: none yet)
        if ckpt:
            self._restore(resume, ckpt)

    def _restore(self, path, ckpt: dict) -> None:
        """Step, optimizer and RNG states from a checkpoint; a missing or bad entry is one line."""
        try:
            self.step = int(ckpt["step"])
            if "optimizer" in ckpt:
                self.opt.load_state_dict(ckpt["optimizer"])
                checkpoint.check_finite(path, _optimizer_tensors(self.opt), "optimizer state")
                checkpoint.check_optimizer(path, self.params, self.opt)
            self.noise_gen.set_state(ckpt["rng"]["noise"])
            if self.train_tasks is not None:
                self.train_tasks.load_state_dict(ckpt["rng"]["tasks"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"checkpoint {path} cannot be resumed: its step, optimizer or RNG entry is missing "
                f"or damaged ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
            ) from None
        self.saved = Path(path) if path is not None else None

    # -- what plugins see ---------------------------------------------------------------------
    @property
    def session(self) -> Session:
        return self.s

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes files (always, outside torchrun)."""
        return self.dist.is_main

    def request_stop(self, reason: str) -> None:
        """End the run after the current meta-step (saved as the last); for plugins."""
        self._stop = reason

    def _call(self, hook: str, **kwargs):
        return self.s.registries.call(hook, trainer=self, **kwargs)

    # -- the loop --------------------------------------------------------------------------
    def run(self, *, log=print) -> TrainResult:
        """Meta-train to ``meta.iterations``; ``log`` gets the header and notices. A run that
        fails before writing a checkpoint into an output folder it created removes what it
        wrote there (config.toml and what the plugins wrote: metrics.jsonl)."""
        cfg = self.cfg
        if self.step >= cfg.meta.iterations and self.s.algorithm.trains:
            where = self.resumed_from or self.out / CHECKPOINT
            if not self.dist.restarts:
                more = (
                    f"pass --iterations N with {self.step} < N <= {ITERATIONS_MAX} to train on"
                    if self.step < ITERATIONS_MAX
                    else f"that is the largest meta.iterations ({ITERATIONS_MAX}): it is finished"
                )
                raise ConfigError(
                    f"nothing to do: checkpoint {where} is at step {self.step} and meta.iterations is "
                    f"{cfg.meta.iterations}; {more}"
                )
            log(f"nothing left to do: {where} is at step {self.step} of {cfg.meta.iterations}")
            return TrainResult(self.step, where if Path(where).is_file() else None, None, {})
        claim = distributed.on_main(self.dist, self._claim)  # rank 0 holds run.out
        try:
            return self._claimed(log, created=claim is not None and claim.created)
        finally:
            if claim is not None:
                claim.release()

    def _claimed(self, log, *, created: bool) -> TrainResult:
        self.log = log if self.is_main else (lambda line: None)  # rank 0 alone logs
        started = False
        try:
            self._start()
            started = True
            self._call("metagan_run_start")
            result = self._run()
        except BaseException as exc:
            self.discard = created and self.saved is None and self.is_main
            if started:
                self._call("metagan_run_end", result=None, error=exc)
            if self.discard:
                _remove_run_leftovers(self.out)
            raise
        self._call("metagan_run_end", result=result, error=None)
        return result

    def _claim(self) -> rundir.Claim:
        """run.out for this run alone: locked, and refused if it holds a run this one neither
        continues nor may overwrite (metagan/rundir.py)."""
        return rundir.claim(
            self.out, resume=self.resumed_from, overwrite=self.overwrite,
            restarted=self.dist.restarts > 0,
        )  # fmt: skip

    def _start(self) -> None:
        """The output folder, the log header and config.toml."""
        cfg, log = self.cfg, self.log
        self.out.mkdir(parents=True, exist_ok=True)
        if self.is_main:
            remove_stale_temps(self.out)
        for line in self.s.header():
            log(line)
        d = self.dist
        if d.enabled:
            log(f"distributed: {d.world_size} processes ({d.backend}) share each meta-batch")
        if d.restarts and self.step:
            log(f"torchrun restart {d.restarts}: resumed {self.resumed_from} at step {self.step}")
        if self.is_main:
            with atomic_write(self.out / "config.toml", "w") as f:
                f.write(cfg.to_toml())

    def _run(self) -> TrainResult:
        cfg, s = self.cfg, self.s
        if not s.algorithm.trains:
            self.log(
                f"{cfg.meta.algorithm}: nothing to meta-train; saving the random initialisation"
            )
            self._save()
            grid = self.sample_grid()
            return TrainResult(self.step, self.saved, grid, {})
        T = cfg.meta.tasks
        B = s.engine.fake_batch(cfg.data.shots)
        skips, last, grid = 0, {}, None
        applied = skipped = dropped = 0
        t_start, tasks_done = time.perf_counter(), 0
        while self.step < cfg.meta.iterations:
            batch = self.train_tasks.sample(T).to(s.device)
            noise = Noise.draw(
                cfg.inner.steps, T, B, cfg.model.z_dim, generator=self.noise_gen, device=s.device
            )
            res = self.stepper(batch, noise, step=self.step + 1)
            ok = res.grads is not None and all(
                bool(torch.isfinite(g).all()) for g in res.grads.values()
            )
            self.step += 1
            ok = ok and self._apply(res.grads)
            if ok:
                skips = 0
                applied += 1
            else:
                skips += 1
                skipped += 1
            dropped += res.dropped
            diverged = skips >= cfg.meta.max_skips
            tasks_done += T
            elapsed = time.perf_counter() - t_start
            last = {
                "step": self.step,
                **{k: round(v, 5) for k, v in res.stats.items()},
                "dropped_tasks": res.dropped,
                "skipped": not ok,
                "tasks_per_s": round(tasks_done / max(elapsed, 1e-9), 2),
            }
            self._call("metagan_meta_step_end", result=res, row=dict(last))
            if diverged or self.step % cfg.run.log_every == 0 or self.step == cfg.meta.iterations:
                extras = self._call("metagan_collect_metrics", result=res, batch=batch, noise=noise)
                for extra in extras or []:
                    last.update(extra or {})
                self._call("metagan_log_metrics", row=dict(last))
            if diverged:
                kept = (
                    f"the last good checkpoint {self.saved} is intact"
                    if self.saved is not None and self.saved.is_file()
                    else "no checkpoint was written"
                )
                raise TrainingDiverged(
                    f"stopped at step {self.step}: {skips} consecutive meta-steps had non-finite "
                    f"losses, meta-gradients or updates ({skipped} skipped, {dropped} tasks dropped "
                    f"in all); {kept} (lower inner.lr_g/lr_d or meta.lr, or set inner.max_grad_norm)"
                )
            stop = self._stop is not None
            if stop:
                self.log(f"stopped at step {self.step}: {self._stop}")
            # the last step is saved even when skipped: the parameters are those of the
            # last applied update (finite), so nothing of the run is lost
            last_step = stop or self.step == cfg.meta.iterations
            if (ok and self.step % cfg.run.checkpoint_every == 0) or last_step:
                self._save()
            if cfg.run.sample_every and self.step % cfg.run.sample_every == 0:
                grid = self.sample_grid()
            if stop:
                break
        if (self.step == cfg.meta.iterations or self._stop is not None) and (
            grid is None or cfg.run.sample_every == 0 or self.step % cfg.run.sample_every
        ):
            grid = self.sample_grid()
        return TrainResult(self.step, self.saved, grid, last, applied, skipped, dropped)

    def _apply(self, grads: dict[str, torch.Tensor]) -> bool:
        """One Adam step with ``grads``; if it leaves any parameter or optimizer state
        non-finite (e.g. an enormous meta.lr), both are rolled back and False is returned, so
        the step counts as skipped and no non-finite value is ever saved."""
        before = {k: p.detach().clone() for k, p in self.params.items()}
        state = {p: {n: _clone(v) for n, v in st.items()} for p, st in self.opt.state.items()}
        for k, p in self.params.items():
            p.grad = grads[k].detach().to(p.dtype)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        tensors = [*self.params.values(), *_optimizer_tensors(self.opt)]
        if all(bool(torch.isfinite(t).all()) for t in tensors):
            return True
        with torch.no_grad():  # in place: a CUDA graph reads the parameters' storage
            for k, p in self.params.items():
                p.copy_(before[k])
        self.opt.state.clear()
        self.opt.state.update(state)
        return False

    # -- outputs -----------------------------------------------------------------------------
    def _save(self) -> None:
        if not self.dist.is_main:
            return
        state = {
            "config": self.cfg.to_dict(),
            "params": {k: v.detach().cpu() for k, v in self.params.items()},
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "plugins": self.s.provenance(),  # named components → the plugin that made each
            "rng": {
                "noise": self.noise_gen.get_state(),
                "tasks": self.train_tasks.state_dict() if self.train_tasks is not None else {},
            },
        }
        checkpoint.check_finite(self.out / CHECKPOINT, state["params"].values(), "parameters")
        checkpoint.save(self.out / CHECKPOINT, state)
        self.saved = self.out / CHECKPOINT
        self._call("metagan_checkpoint_saved", path=self.saved)

    def sample_grid(self) -> Path | None:
        """The sample grid of the current step (the ``grids`` plugin makes it; plugins on
        ``metagan_sample_grid`` are told); None where no plugin made one (other ranks)."""
        path = self._call("metagan_make_sample_grid")
        if path is not None:
            self._call("metagan_sample_grid", path=path)
        return path


def _clone(v):
    return v.clone() if isinstance(v, torch.Tensor) else v


def _optimizer_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The floating-point tensors of the optimizer's state (Adam's moments and step counts)."""
    return [
        v
        for st in opt.state.values()
        for v in st.values()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]


def _remove_run_leftovers(out: Path) -> None:
    """What a failed run wrote into the output folder it created, and the folder if then empty."""
    (out / "config.toml").unlink(missing_ok=True)  # the plugins removed theirs (run_end)
    remove_stale_temps(out)
    for folder in (out / "samples", out):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass
