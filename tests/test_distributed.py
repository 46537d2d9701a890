"""Distributed meta-training under torchrun, on CPU with gloo.

* 2 processes give the meta-update of 1 process over the same T tasks (every built-in
  algorithm, uneven shards, dropped tasks), and leave both ranks with identical parameters;
* a run trains like a single process and resumes under another world size (1 -> 2 -> 1);
* under ``--max-restarts`` a rank killed mid-step restarts the job from the last checkpoint, and
  metrics.jsonl ends with every step once and the losses of the uninterrupted run.

torchrun starts real processes (about 10 s each on 2 cores), so the runs are few and tiny.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_env

from metagan import config, distributed, stepping
from metagan.cli import main
from metagan.errors import ConfigError
from metagan.inner import Noise
from metagan.loggers.metrics import truncate_metrics
from metagan.session import Session

HERE = Path(__file__).resolve().parent
TINY = ["--dataset", "glyphs", "--algorithm", "fomaml", "model.width=8", "model.z_dim=16",
        "meta.tasks=4", "inner.steps=1", "data.shots=2", "data.queries=2", "run.progress=false",
        "run.sample_every=0", "run.log_every=1", "run.sample_classes=2", "run.sample_num=2"]  # fmt: skip

T = 5  # meta-batch of the meta-update test: shards of 3 and 2 tasks
CASES = [  # (algorithm, tasks made non-finite)
    ("fomaml", ()), ("maml", ()), ("reptile", ()), ("metasgd", ()), ("finetune", ()),
    ("fomaml", (2,)),  # rank 0 drops one of its 3 tasks
    ("fomaml", (1, 3)),  # rank 1 drops all of its tasks, rank 0 carries the step
    ("maml", (0,)),
    ("reptile", (0, 1, 2, 3, 4)),  # nothing left: every rank skips the step
]  # fmt: skip


def meta_batch(algorithm: str, nan_tasks):
    """A fixed meta-batch of T tasks and its noise, the same in every process."""
    cfg = config.load(None, [f"meta.algorithm={algorithm}", "data.dataset=glyphs", "model.width=8",
                             "model.z_dim=16", f"meta.tasks={T}", "inner.steps=1", "data.shots=2",
                             "data.queries=2"])  # fmt: skip
    s = Session(cfg)
    batch = s.sampler("train").sample(T)
    for t in nan_tasks:
        batch.support[t] = float("nan")
    gen = torch.Generator().manual_seed(0)
    noise = Noise.draw(1, T, s.engine.fake_batch(2), 16, generator=gen)
    return cfg, s, s.init_params(), batch, noise


def adam_step(params, grads):
    """The trainer's meta-update: one Adam step with these meta-gradients."""
    if grads is not None:
        opt = torch.optim.Adam(params.values(), lr=1e-2, betas=(0.5, 0.999))
        for k, p in params.items():
            p.grad = grads[k].detach()
        opt.step()
    return {k: p.detach().clone() for k, p in params.items()}


WORKER = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import torch
from metagan import distributed, stepping
from test_distributed import CASES, adam_step, meta_batch

out, results, ctx = Path(sys.argv[1]), [], None
for algorithm, nan_tasks in CASES:
    cfg, s, params, batch, noise = meta_batch(algorithm, nan_tasks)
    ctx = ctx or distributed.setup(cfg)
    res = stepping.sharded_step(ctx, s.algorithm, params, batch, noise, s.engine, step=1, out=out)
    grads = None if res.grads is None else {{k: g.detach() for k, g in res.grads.items()}}
    results.append(dict(grads=grads, stats=res.stats, dropped=res.dropped, params=adam_step(params, grads)))
torch.save(results, out / f"rank{{ctx.rank}}.pt")
"""


def torchrun(args, *, restarts=0, env=None, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "--max-restarts", str(restarts), *args]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=cli_env(OMP_NUM_THREADS="1", **(env or {})))  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def metrics(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def close(a: list[dict], b: list[dict], tol=2e-4):
    """Same steps, same losses within ``tol`` (float summation order differs across ranks)."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        # a distributed run logs no memorisation (each rank sees only its shard of the tasks)
        assert ra.keys() - {"memorisation"} == rb.keys() - {"memorisation"}
        for k in ra.keys() & rb.keys():
            if k != "tasks_per_s":
                assert ra[k] == pytest.approx(rb[k], abs=tol), (ra["step"], k)


def params(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)["params"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread, like each torchrun worker (OMP_NUM_THREADS=1): on a small shared
    machine two threads per process mostly wait for each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# -- in-process: no process group -----------------------------------------------------------
def test_one_process_is_the_plain_path(monkeypatch):
    cfg = config.load(None, [])
    for env in ({}, {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}):
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        ctx = distributed.setup(cfg)
        assert not ctx.enabled and ctx.is_main and ctx.rank_config(cfg) is cfg
    assert not torch.distributed.is_initialized()


def test_shards_are_disjoint_and_cover_the_batch():
    for tasks, world in ((4, 2), (5, 2), (7, 3), (3, 3)):
        shards = [stepping.shard(tasks, r, world).tolist() for r in range(world)]
        assert sorted(sum(shards, [])) == list(range(tasks))
    with pytest.raises(ConfigError, match="3 processes"):
        stepping.shard(2, 0, 3)


def test_setup_refuses_bad_settings(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="meta.tasks=2 is smaller than the 4 processes"):
        distributed.setup(config.load(None, ["meta.tasks=2"]))
    with pytest.raises(ConfigError, match="under torchrun each process uses cuda:LOCAL_RANK"):
        distributed.setup(config.load(None, ["run.device=cuda:1"]))
    for k, v in {
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "TORCHELASTIC_RESTART_COUNT": "1",
        "GROUP_WORLD_SIZE": "2",
    }.items():
        monkeypatch.setenv(k, v)  # a restart on several nodes with torchrun's shared TCPStore
    with pytest.raises(ConfigError, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        distributed.setup(config.load(None, []))
    assert not torch.distributed.is_initialized()


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(
        "".join(json.dumps({"step": i, "loss": i / 3}) + "\n" for i in (1, 2, 3))
        + '{"step": 4, "lo'
    )
    truncate_metrics(path, 2)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2]
    truncate_metrics(path, 5)  # nothing past the checkpoint: untouched
    assert len(path.read_text().splitlines()) == 2


# -- torchrun -------------------------------------------------------------------------------
def test_two_processes_give_the_meta_update_of_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(HERE)))
    torchrun([str(script), str(tmp_path)])
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for (algorithm, nan_tasks), a, b in zip(CASES, r0, r1, strict=True):
        case = f"{algorithm} with tasks {nan_tasks} non-finite"
        _, s, p, batch, noise = meta_batch(algorithm, nan_tasks)
        ref = s.algorithm.step(p, batch, noise, s.engine)
        for k in a["params"]:  # both ranks apply the very same update
            torch.testing.assert_close(a["params"][k], b["params"][k], rtol=0, atol=0, msg=case)
        assert a["dropped"] == b["dropped"] == ref.dropped, case
        for k, v in ref.stats.items():  # the task-weighted means, NaN where one process has NaN
            torch.testing.assert_close(a["stats"][k], b["stats"][k], rtol=0, atol=0, equal_nan=True)
            torch.testing.assert_close(a["stats"][k], v, equal_nan=True, msg=case)
        assert (a["grads"] is None) == (ref.grads is None), case
        if ref.grads is not None:
            for k, g in ref.grads.items():
                torch.testing.assert_close(
                    a["grads"][k], g.detach(), rtol=1e-4, atol=1e-6, msg=case
                )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """P: 2 steps in one process; B: resumed from P by 2 processes to step 6 (so W = 1 -> 2);
    A: 8 steps in one process, the reference."""
    tmp = tmp_path_factory.mktemp("dist")
    P, A, B = tmp / "P", tmp / "A", tmp / "B"
    assert main(["train", *TINY, "--iterations", "2", "--out", str(P)]) == 0
    assert main(["train", *TINY, "--iterations", "8", "--out", str(A)]) == 0
    r = torchrun(
        [
            "-m",
            "metagan",
            "train",
            "--resume",
            str(P / "checkpoint.pt"),
            "--iterations",
            "6",
            "--out",
            str(B),
        ]
    )
    assert r.stdout.count("distributed: 2 processes (gloo)") == 1  # rank 0 alone logs
    return tmp, P, A, B


def test_two_processes_train_like_one_and_resume_under_another_world_size(runs):
    tmp, _, A, B = runs
    close(metrics(B), metrics(A)[2:6])  # steps 3..6 with 2 processes
    E = tmp / "E"  # and back to one process for steps 7, 8
    assert (
        main(["train", "--resume", str(B / "checkpoint.pt"), "--iterations", "8", "--out", str(E)])
        == 0
    )
    close(metrics(E), metrics(A)[6:])
    for k, v in params(A).items():
        torch.testing.assert_close(params(E)[k], v, rtol=1e-3, atol=1e-4)
    assert not list(B.glob(".*tmp"))  # no second writer left a partial file


def test_killed_rank_restarts_from_the_checkpoint_without_losing_or_repeating_a_step(runs):
    tmp, P, _, B = runs
    D = tmp / "D"
    # checkpoints at steps 4 and 6; rank 1 dies inside step 6, after rank 0 logged step 5
    r = torchrun(
        ["-m", "metagan", "train", "--resume", str(P / "checkpoint.pt"), "--iterations", "6", "--out", str(D),
         "run.checkpoint_every=2"],
        restarts=1, env={stepping.FAULT_ENV: "6"},
    )  # fmt: skip
    assert (D / ".fault-at-step-6").exists()
    assert f"torchrun restart 1: resumed {D / 'checkpoint.pt'} at step 4" in r.stdout
    strip = lambda rows: [{k: v for k, v in x.items() if k != "tasks_per_s"} for x in rows]  # noqa: E731
    assert [x["step"] for x in metrics(D)] == [3, 4, 5, 6]
    assert strip(metrics(D)) == strip(metrics(B))  # the uninterrupted 2-process run, exactly
    assert torch.load(D / "checkpoint.pt", weights_only=True)["step"] == 6
    for k, v in params(B).items():
        torch.testing.assert_close(params(D)[k], v, rtol=0, atol=0)


def test_resume_after_restart_ignores_another_runs_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--iterations", "1", "--out", str(out)]) == 0
    latest = out / "checkpoint.pt"
    cfg = config.from_dict(torch.load(latest, weights_only=True)["config"])
    other = dataclasses.replace(cfg, meta=dataclasses.replace(cfg.meta, lr=0.5))
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # one process, restarted by torchrun
    ctx = distributed.setup(cfg)
    assert ctx.restarts == 1 and not ctx.enabled
    ckpt, path = distributed.load_checkpoint(ctx, cfg, None, latest)
    assert path == latest and ckpt["step"] == 1
    assert distributed.load_checkpoint(ctx, other, None, latest) == (None, None)  # not this run's
