"""Shot-conditioned architectures (`dagan`, `fusion`, `warp`): the contract, batched == sequential for
every meta-algorithm, the randomness inside G, the mode-seeking term, and the CLI end to end."""

import json

import pytest
import torch
from test_cli import TINY, expect_error, write_images
from test_inner import make_batch
from torch import nn
from torch.func import vmap

from metagan import plugins
from metagan.algorithm import MetaConfig, rows
from metagan.cli import main
from metagan.errors import ConfigError
from metagan.inner import BatchedEngine, InnerConfig, Noise, mode_seeking_penalty
from metagan.models import ArchConfig, FunctionalNet, GanPair
from metagan.sequential import SequentialEngine
from metagan.testing import check_architecture

CONDITIONAL = ["dagan", "fusion", "warp"]


def pair(registries, arch, *, size=28, z_dim=8, width=4):
    torch.manual_seed(0)
    return registries.architectures.get(arch)(ArchConfig(image_size=size, z_dim=z_dim, width=width))


@pytest.mark.parametrize("arch", CONDITIONAL)
@pytest.mark.parametrize("size, channels", [(28, 1), (32, 1), (64, 1), (64, 3), (128, 3)])
def test_conditional_architectures_pass_the_conformance_check(registries, arch, size, channels):
    assert pair(registries, arch, size=size).conditional
    build = registries.architectures.get(arch)
    check_architecture(build, image_size=size, channels=channels, width=4, tasks=2)


@pytest.mark.parametrize("arch", CONDITIONAL)
@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile", "metasgd", "finetune"])
def test_meta_gradients_batched_equal_sequential(registries, float64, arch, name):
    cfg = InnerConfig(steps=2, lr_g=0.05, lr_d=0.05, mode_seeking=0.1, r1_gamma=0.5, imle=0.2)
    p, loss = pair(registries, arch), registries.losses.get("nonsaturating")
    batched, seq = BatchedEngine(p, loss, cfg), SequentialEngine(p, loss, cfg)
    algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
    g0, d0 = batched.G.init_flat(), batched.D.init_flat()
    params = {
        k: nn.Parameter(v.clone())
        for k, v in {"g": g0, "d": d0, **algo.extra_parameters(g0, d0)}.items()
    }
    batch = make_batch(T=3, K=3, Q=2)
    noise = Noise.draw(2, 3, 4, 8, generator=torch.Generator().manual_seed(2))
    ra = algo.step(params, batch, noise, batched)
    rb = algo.step(params, batch, noise, seq)
    for k in params:
        torch.testing.assert_close(ra.grads[k], rb.grads[k], msg=f"{arch}/{name}: {k}")
        assert ra.grads[k].abs().sum() > 0, f"{arch}/{name}: zero meta-gradient for {k}"


@pytest.mark.parametrize("arch", CONDITIONAL)
def test_recomputed_second_order_steps_match(registries, float64, arch):
    grads = {}
    for recompute in (False, True):
        cfg = InnerConfig(steps=2, lr_g=0.1, lr_d=0.1, method="adam", recompute=recompute)
        engine = BatchedEngine(pair(registries, arch), registries.losses.get("nonsaturating"), cfg)
        algo = registries.algorithms.get("maml")(meta=MetaConfig(), inner=cfg)
        params = {"g": nn.Parameter(engine.G.init_flat()), "d": nn.Parameter(engine.D.init_flat())}
        noise = Noise.draw(2, 3, 2, 8, generator=torch.Generator().manual_seed(5))
        grads[recompute] = algo.step(params, make_batch(), noise, engine).grads
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], msg=k)


@pytest.mark.parametrize("arch", CONDITIONAL)
def test_randomness_is_a_function_of_z_and_tasks_are_independent(registries, arch):
    G = FunctionalNet(pair(registries, arch).generator)
    theta = G.init_flat().expand(3, -1).clone()  # (T, P_G)
    shots = torch.rand(3, 4, 1, 28, 28) * 2 - 1  # (T, K, C, H, W)
    z = torch.randn(3, 6, 8)
    x = vmap(G)(theta, z, shots)
    # the same z gives the same sample, wherever it stands in the batch; torch's RNG is unused
    torch.manual_seed(123)
    perm = torch.randperm(6)
    torch.testing.assert_close(vmap(G)(theta, z[:, perm], shots), x[:, perm])
    # another task's shots change nothing in this task
    other = shots.clone()
    other[1:] = torch.rand(2, 4, 1, 28, 28)
    y = vmap(G)(theta, z, other)
    torch.testing.assert_close(y[0], x[0])
    assert not torch.allclose(y[1], x[1])
    # the last z entry picks the shots: change it and the sample changes
    z2 = z.clone()
    z2[..., -1] += 0.37
    assert not torch.allclose(vmap(G)(theta, z2, shots), x)


def _warp_with(registries, flow_bias: tuple[float, float], size=28):
    """A warp G whose flow is the constant ``flow_bias`` (pre-tanh), whatever z and the shot."""
    g = pair(registries, "warp", size=size).generator
    with torch.no_grad():
        g.flow.weight.zero_()
        g.flow.bias.copy_(torch.tensor(flow_bias))
        g.zflow.weight.zero_()
        g.zflow.bias.zero_()
    return g


def test_warp_with_zero_flow_returns_its_shot(registries):
    from plugins.metagan_builtin.architectures.dagan import one_shot

    g = _warp_with(registries, (0.0, 0.0))
    shots = torch.rand(4, 1, 28, 28) * 2 - 1
    z = torch.randn(6, 8)
    pick = one_shot(z, 4).argmax(1)
    torch.testing.assert_close(g(z, shots), shots[pick], atol=1e-5, rtol=0)


def test_warp_with_a_constant_flow_translates_the_shot_by_that_many_pixels(registries):
    from plugins.metagan_builtin.architectures.warp import MAX_SHIFT

    # a flow of +2 px in x: the output at column j reads the shot at column j + 2, and the
    # two columns at the right edge repeat the shot's last column (border padding)
    shift_px = 2.0
    u = shift_px / 28 / MAX_SHIFT  # tanh(b) * 2 * MAX_SHIFT grid units = shift_px * 2 / 28
    g = _warp_with(registries, (float(torch.atanh(torch.tensor(u))), 0.0))
    shot = torch.rand(1, 1, 28, 28) * 2 - 1
    out = g(torch.randn(3, 8), shot)
    expect = torch.cat([shot[..., 2:], shot[..., -1:].expand(-1, -1, -1, 2)], -1)
    torch.testing.assert_close(out, expect.expand(3, -1, -1, -1), atol=1e-4, rtol=0)


def test_dagan_picks_one_shot_uniformly_and_fusion_mixes_convexly():
    from plugins.metagan_builtin.architectures.dagan import one_shot
    from plugins.metagan_builtin.architectures.fusion import convex_weights

    z = torch.randn(4000, 8, generator=torch.Generator().manual_seed(0))
    w = one_shot(z, 5)  # (B, K)
    assert set(w.unique().tolist()) == {0.0, 1.0} and (w.sum(1) == 1).all()
    share = w.mean(0)
    assert (share - 0.2).abs().max() < 0.03, share  # every shot is chosen about equally often
    c = convex_weights(z, 5)
    assert (c >= 0).all() and torch.allclose(c.sum(1), torch.ones(4000))
    assert (c.max(1).values < 1).all() and (c.mean(0) - 0.2).abs().max() < 0.03
    torch.testing.assert_close(convex_weights(z[:1], 1), torch.ones(1, 1))


def test_mode_seeking_term_against_a_hand_computation(registries, float64):
    fake = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    img = sum(
        abs(fake[i, 0, r, c] - fake[i + 2, 0, r, c])
        for i in (0, 1)
        for r in range(3)
        for c in range(3)
    )
    lat = sum(abs(z[i, j] - z[i + 2, j]) for i in (0, 1) for j in range(5))
    expected = 1 / ((img / 18) / (lat / 10) + 1e-5)
    torch.testing.assert_close(mode_seeking_penalty(fake, z), expected)
    # and it is what the engine adds to L_G, scaled by inner.mode_seeking
    p, loss = pair(registries, "dagan"), registries.losses.get("nonsaturating")

    def d_apply(x):
        return x.flatten(1).mean(1)

    real = torch.rand(2, 1, 3, 3)
    off = SequentialEngine(p, loss, InnerConfig()).g_objective(d_apply, fake, z, real)
    on = SequentialEngine(p, loss, InnerConfig(mode_seeking=0.3)).g_objective(
        d_apply, fake, z, real
    )
    torch.testing.assert_close(on - off, 0.3 * expected)


def test_engine_refuses_a_conditional_call_without_shots(registries):
    cfg = InnerConfig(steps=1)
    for E in (BatchedEngine, SequentialEngine):
        e = E(pair(registries, "fusion"), registries.losses.get("nonsaturating"), cfg)
        theta = rows(e.G.init_flat(), 2)
        with pytest.raises(
            ConfigError, match=r"conditional: engine.generate needs the tasks' support"
        ) as exc:
            e.generate(theta, torch.randn(2, 3, 8))
        assert "\n" not in str(exc.value)
        assert e.generate(theta, torch.randn(2, 3, 8), torch.rand(2, 1, 1, 28, 28)).shape == (
            2,
            3,
            1,
            28,
            28,
        )
        with pytest.raises(ConfigError, match="outer_losses needs"):
            e.outer_losses(
                theta, rows(e.D.init_flat(), 2), torch.rand(2, 2, 1, 28, 28), torch.randn(2, 3, 8)
            )
    with pytest.raises(ConfigError, match="inner.mode_seeking must be >= 0"):
        InnerConfig(mode_seeking=-1.0)
    with pytest.raises(ConfigError, match="inner.fake_batch >= 2"):
        InnerConfig(mode_seeking=1.0, fake_batch=1)


def test_unconditional_pairs_ignore_shots(registries):
    e = BatchedEngine(
        registries.architectures.get("mlp")(ArchConfig(z_dim=8)),
        registries.losses.get("hinge"),
        InnerConfig(),
    )
    assert not e.conditional and not GanPair(nn.Linear(1, 1), nn.Linear(1, 1)).conditional
    theta, z = rows(e.G.init_flat(), 2), torch.randn(2, 3, 8)
    torch.testing.assert_close(
        e.generate(theta, z, torch.rand(2, 1, 1, 28, 28)), e.generate(theta, z)
    )


@pytest.mark.parametrize(
    "arch, algorithm", [("dagan", "maml"), ("fusion", "fomaml"), ("dagan", "reptile")]
)
def test_train_adapt_and_sample_on_my_images(tmp_path, capsys, arch, algorithm):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--arch", arch, "--algorithm", algorithm, "--out", str(out), "model.width=4",
            "inner.mode_seeking=0.5", "run.sample_classes=1"]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["memorisation"] > 0 for r in lines), lines
    ckpt = str(out / "checkpoint.pt")
    mine = write_images(tmp_path / "mine", 3)
    ad = tmp_path / "adapted"
    assert main(["adapt", "--checkpoint", ckpt, "--images", str(mine), "--steps", "2", "--num", "4",
                 "--out", str(ad)]) == 0  # fmt: skip
    assert len(list(ad.glob("sample_*.png"))) == 4 and (ad / "grid.png").is_file()
    sm = tmp_path / "sampled"
    assert (
        main(
            ["sample", "--checkpoint", ckpt, "--images", str(mine), "--num", "5", "--out", str(sm)]
        )
        == 0
    )
    assert len(list(sm.glob("sample_*.png"))) == 5
    # the eval rows adapt and sample a conditional checkpoint like any other
    from metagan.eval.sources import CheckpointSource

    src = CheckpointSource(out / "checkpoint.pt", plugins.get())
    shots = torch.rand(2, 3, 1, 28, 28) * 2 - 1
    res = src.samples(shots, 4, steps=[0, 1], seed=0)
    assert res[1].images.shape == (2, 4, 1, 28, 28) and not res[1].failed.any()
    capsys.readouterr()
    never = tmp_path / "never"
    expect_error(capsys, ["sample", "--checkpoint", ckpt, "--out", str(never)], f"{arch!r} is conditioned on shots",
                 "--images DIR")  # fmt: skip
    assert not never.exists()


def test_conditional_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "never"
    expect_error(capsys, ["train", *TINY, "--arch", "fusion", "model.z_dim=1", "--out", str(out)],
                 "'fusion' reserves the last z entry", "model.z_dim must be >= 2")  # fmt: skip
    expect_error(capsys, ["train", *TINY, "--arch", "dagan", "inner.mode_seeking=-1", "--out", str(out)],
                 "inner.mode_seeking must be >= 0")  # fmt: skip
    (code,) = [main(["train", *TINY, "--algorithm", "scratch", "--out", str(tmp_path / "dc")])]
    assert code == 0
    mine = write_images(tmp_path / "mine", 2)
    capsys.readouterr()
    expect_error(capsys, ["sample", "--checkpoint", str(tmp_path / "dc" / "checkpoint.pt"), "--images", str(mine),
                          "--out", str(out)], "'dcgan' is not conditional")  # fmt: skip
    assert not out.exists()


def test_untrained_jitter_generator_is_the_free_jitter(registries):
    # an untrained `jitter` G is exactly the free affine + elastic + stroke jitter of the shot
    # each z picks, with the noise u = Phi(z): meta-learning starts at free augmentation
    from metagan.transforms import Jitter, deform
    from plugins.metagan_builtin.architectures.dagan import one_shot
    from plugins.metagan_builtin.architectures.jitter import FREE

    check_architecture(registries.architectures.get("jitter"), z_dim=64)
    g = pair(registries, "jitter", z_dim=64, width=8).generator
    shots = torch.full((3, 1, 28, 28), -1.0)
    shots[:, :, 6:22, 12:16] = torch.rand(3, 1, 16, 4) * 2 - 1  # strokes on black paper
    z = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    free = Jitter(**FREE, background=-1.0)
    u = torch.distributions.Normal(0.0, 1.0).cdf(z[:, : free.noise].double())
    pick = one_shot(z, 3).argmax(1)
    want = deform(shots[pick], **free.params(u, 28), background=-1.0)
    torch.testing.assert_close(g(z, shots), want.float(), atol=1e-4, rtol=0)
    # and the learned parts are live: the gains and the correction's last layer get gradients
    # (the rest of the correction does once that layer has moved off zero)
    g(z, shots).square().sum().backward()
    for p in (g.gain, g.head[-1].weight, g.head[-1].bias):
        assert p.grad is not None and (p.grad != 0).all()


@pytest.mark.parametrize("name", ["maml", "fomaml"])
def test_jitter_meta_gradients_batched_equal_sequential(registries, float64, name):
    cfg = InnerConfig(steps=2, lr_g=0.05, lr_d=0.05)
    p = pair(registries, "jitter", z_dim=64)
    loss = registries.losses.get("nonsaturating")
    batched, seq = BatchedEngine(p, loss, cfg), SequentialEngine(p, loss, cfg)
    algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
    params = {"g": nn.Parameter(batched.G.init_flat()), "d": nn.Parameter(batched.D.init_flat())}
    noise = Noise.draw(2, 3, 4, 64, generator=torch.Generator().manual_seed(2))
    batch = make_batch(T=3, K=3, Q=2)
    ra, rb = algo.step(params, batch, noise, batched), algo.step(params, batch, noise, seq)
    for k in params:
        torch.testing.assert_close(ra.grads[k], rb.grads[k], msg=f"jitter/{name}: {k}")
        assert ra.grads[k].abs().sum() > 0


def test_jitter_discriminator_augments_by_content_and_cuts_out_a_square():
    from plugins.metagan_builtin.architectures.jitter import content_uniforms, diff_augment

    x = torch.ones(5, 1, 28, 28) * torch.linspace(0.1, 0.9, 5).view(5, 1, 1, 1)  # flat pages
    out = diff_augment(x)
    # a flat page shifts into itself (edges repeated); only the cutout differs: a square of
    # the pixels within 28/8 = 3.5 of the centre (u * 28) on both axes, set to 0
    u = content_uniforms(x, 4)
    r = torch.arange(28.0)
    for i in range(5):
        rows = ((r - u[i, 2] * 28).abs() < 3.5).float()
        cols = ((r - u[i, 3] * 28).abs() < 3.5).float()
        want = x[i, 0] * (1 - rows[:, None] * cols[None])
        torch.testing.assert_close(out[i, 0], want)
        assert 1 <= rows.sum() <= 7 and 1 <= cols.sum() <= 7
    # the same image gets the same augmentation wherever it stands (real or fake alike)
    torch.testing.assert_close(diff_augment(x.flip(0)), out.flip(0))
