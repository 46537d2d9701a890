"""The noise-only Meta-GAN's config (configs/noise_only.toml) and benchmarks/set_inner.py, which
gives a checkpoint the adaptation rate chosen on validation classes before `metagan eval`."""

import importlib.util
from pathlib import Path

import pytest
import torch

from metagan import config
from metagan.cli import main

ROOT = Path(__file__).parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_noise_only_config_is_the_documented_reference_design():
    cfg = config.load(ROOT / "configs" / "noise_only.toml", [])
    # docs/results.md: MLP G/D, z 100, Reptile, 10 Adam inner steps at 0.01, 300 x 8 tasks
    assert (cfg.model.arch, cfg.model.z_dim, cfg.meta.algorithm) == ("mlp", 100, "reptile")
    assert (cfg.inner.method, cfg.inner.steps, cfg.inner.lr_g, cfg.inner.lr_d) == (
        "adam",
        10,
        0.01,
        0.01,
    )
    assert (cfg.meta.iterations, cfg.meta.tasks, cfg.inner.max_grad_norm) == (300, 8, 0.0)


def test_the_augmented_config_differs_from_the_reference_only_in_task_augmentation():
    ref = config.load(ROOT / "configs" / "noise_only.toml", [])
    aug = config.load(ROOT / "configs" / "noise_only_aug.toml", [])
    assert aug.data.task_augment == "rot90" and ref.data.task_augment == "none"
    assert aug == config.load(ROOT / "configs" / "noise_only.toml", ['data.task_augment="rot90"'])


def test_set_inner_changes_how_a_checkpoint_adapts_and_nothing_else(tmp_path):
    out = tmp_path / "s"
    assert main(["train", "--algorithm", "scratch", "--arch", "mlp", "model.z_dim=8",
                 "run.progress=false", "run.sample_every=0", "--out", str(out)]) == 0  # fmt: skip
    src, dest = out / "checkpoint.pt", tmp_path / "adapt.pt"
    set_inner = _script("set_inner")
    assert set_inner.main([str(src), str(dest), "inner.lr_g=0.003", "inner.method=adam"]) == 0
    a, b = (torch.load(p, weights_only=True) for p in (src, dest))
    assert b["config"]["inner"]["lr_g"] == 0.003 and b["config"]["inner"]["method"] == "adam"
    assert b["config"]["inner"]["lr_d"] == a["config"]["inner"]["lr_d"]
    assert b["config"]["meta"] == a["config"]["meta"] and b["step"] == a["step"]
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    with pytest.raises(SystemExit, match="only inner"):
        set_inner.main([str(src), str(tmp_path / "x.pt"), "meta.lr=0.1"])
    assert not (tmp_path / "x.pt").exists()
