"""The outer loop's safety nets, and the conformance checks shipped for plugin authors."""

import pytest
import torch
from test_plugins import plugin

from metagan import config
from metagan.algorithm import MetaResult
from metagan.errors import TrainingDiverged
from metagan.session import Session
from metagan.testing import check_algorithm, check_architecture
from metagan.train import Trainer

TINY = ["model.width=8", "model.z_dim=16", "meta.tasks=2", "inner.steps=1", "data.shots=2",
        "data.queries=2", "run.progress=false", "run.log_every=1", "run.sample_every=0",
        "run.checkpoint_every=1", "run.sample_classes=2"]  # fmt: skip


def test_consecutive_non_finite_steps_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    cfg = config.load(
        None,
        [
            *TINY,
            "meta.algorithm=fomaml",
            "meta.iterations=10",
            "meta.max_skips=3",
            f"run.out={tmp_path}",
        ],
    )
    trainer = Trainer(cfg)
    real_step = trainer.s.algorithm.step
    calls = {"n": 0}

    def flaky(params, batch, noise, engine):
        calls["n"] += 1
        res = real_step(params, batch, noise, engine)
        if calls["n"] == 2:  # one bad step is skipped and training goes on
            return MetaResult(
                {k: torch.full_like(v, float("nan")) for k, v in res.grads.items()}, res.finite
            )
        if calls["n"] >= 4:  # from step 4 on every meta-gradient is non-finite
            return MetaResult(None, torch.zeros_like(res.finite), dropped=res.finite.numel())
        return res

    trainer.s.algorithm.step = flaky
    with pytest.raises(
        TrainingDiverged,
        match=r"stopped at step 6: 3 consecutive meta-steps .* checkpoint .* is intact",
    ):
        trainer.run(log=lambda line: None)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 3  # the last step whose meta-update was applied
    assert all(torch.isfinite(v).all() for v in ckpt["params"].values())
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert ['"skipped": true' in x for x in lines] == [False, True, False, True, True, True]


def test_an_applied_meta_step_changes_the_initialisation(tmp_path):
    cfg = config.load(
        None, [*TINY, "meta.algorithm=reptile", "meta.iterations=1", f"run.out={tmp_path}"]
    )
    s = Session(cfg)
    before = {k: v.detach().clone() for k, v in s.init_params().items()}
    Trainer(cfg, s).run(log=lambda line: None)
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["params"]
    for k in before:
        assert not torch.equal(before[k], after[k]), k


@pytest.mark.parametrize("arch", ["dcgan", "mlp", "dagan", "fusion"])
def test_builtin_architectures_pass_the_plugin_conformance_check(registries, arch):
    check_architecture(registries.architectures.get(arch))


@pytest.mark.parametrize("size", [64, 128])
def test_dcgan_takes_colour_photographs_at_64_and_128_px(registries, size):
    check_architecture(registries.architectures.get("dcgan"), image_size=size, channels=3, tasks=2)


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile", "metasgd", "finetune"])
def test_builtin_algorithms_pass_the_plugin_conformance_check(registries, name):
    check_algorithm(registries.algorithms.get(name))


def _tiny_run(tmp_path, *extra):
    cfg = config.load(
        None,
        [*TINY, "meta.algorithm=fomaml", "meta.iterations=3", f"run.out={tmp_path}", *extra],
    )
    lines: list[str] = []
    Trainer(cfg).run(log=lines.append)
    return lines


def test_tensorboard_logs_the_metrics_and_the_sample_grids(tmp_path):
    import io
    import json

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    lines = _tiny_run(tmp_path, "run.tensorboard=true", "run.sample_every=2")
    assert f"tensorboard: {tmp_path / 'tensorboard'}" in lines
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    keys = ["loss_d", "loss_g", "inner_loss_d", "inner_loss_g", "tasks_per_s", "memorisation",
            "dropped_tasks"]  # fmt: skip
    assert sorted(acc.Tags()["scalars"]) == sorted(keys)
    for key in keys:  # every logged number of metrics.jsonl, at its step
        events = acc.Scalars(key)
        assert [e.step for e in events] == [r["step"] for r in rows if key in r] == [1, 2, 3]
        want = [r[key] for r in rows]
        assert [e.value for e in events] == pytest.approx(want, rel=1e-6)
    images = acc.Images("samples")
    assert [e.step for e in images] == [2, 3]
    for e in images:  # the grid PNG itself
        png = tmp_path / "samples" / f"step_{e.step:06d}.png"
        got = np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("L"))
        assert np.array_equal(got, np.asarray(Image.open(png)))


def test_without_the_tensorboard_package_the_run_says_so_and_goes_on(tmp_path, monkeypatch):
    import sys

    from metagan.loggers.tensorboard import MISSING

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    lines = _tiny_run(tmp_path, "run.tensorboard=true")
    assert MISSING in lines and "pip install 'metagan[tensorboard]'" in MISSING
    assert not (tmp_path / "tensorboard").exists()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3


def test_a_plugin_stops_the_run_early_and_its_step_is_saved(tmp_path):
    from metagan import plugins

    def stop_at_two(trainer):
        if trainer.step == 2:
            trainer.request_stop("enough")

    regs = plugins.load(extra=[("stopper", plugin(metagan_meta_step_end=stop_at_two))])
    cfg = config.load(
        None,
        [*TINY, "meta.algorithm=fomaml", "meta.iterations=5", "run.checkpoint_every=10",
         f"run.out={tmp_path}"],
    )  # fmt: skip
    lines = []
    res = Trainer(cfg, Session(cfg, regs)).run(log=lines.append)
    assert res.step == 2 and "stopped at step 2: enough" in lines
    assert torch.load(res.checkpoint, weights_only=True)["step"] == 2
    assert res.grid == tmp_path / "samples" / "step_000002.png" and res.grid.is_file()


def test_an_exception_inside_a_plugin_hook_names_the_plugin(tmp_path):
    from metagan import plugins
    from metagan.errors import PluginError

    def boom(row):
        raise ValueError("cannot log")

    regs = plugins.load(extra=[("badlogger", plugin(metagan_log_metrics=boom))])
    cfg = config.load(
        None, [*TINY, "meta.algorithm=fomaml", "meta.iterations=2", f"run.out={tmp_path / 'r'}"]
    )
    with pytest.raises(PluginError) as exc:
        Trainer(cfg, Session(cfg, regs)).run(log=lambda line: None)
    assert str(exc.value) == (
        "plugin 'badlogger' raised in metagan_log_metrics: ValueError: cannot log"
    )
    assert not (tmp_path / "r").exists()  # nothing half-written: the folder it made is gone
