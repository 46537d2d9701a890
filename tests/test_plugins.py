"""The plugin registry: loading, duplicates, suggestions, failures, disabling."""

import inspect
import types

import pytest

from metagan import plugins
from metagan.errors import PluginError, UnknownNameError
from metagan.plugins import hookimpl
from metagan.registry import Registry


def plugin(**hooks):
    mod = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(mod, name, hookimpl(fn))
    return mod


def test_builtins_arrive_through_entry_points(registries):
    assert {"glyphs", "omniglot", "folder"} <= set(registries.datasets.names())
    assert {"dcgan", "mlp", "dagan", "fusion"} <= set(registries.architectures.names())
    assert {"maml", "fomaml", "reptile", "metasgd", "finetune", "scratch"} <= set(
        registries.algorithms.names()
    )
    assert {"nonsaturating", "hinge"} <= set(registries.losses.names())
    e = registries.algorithms.entry("reptile")
    assert e.plugin == "algorithms" and e.dist == "metagan" and e.version
    assert not registries.failed


def test_unknown_name_suggests_close_matches(registries):
    with pytest.raises(UnknownNameError) as exc:
        registries.algorithms.get("reptlie")
    msg = str(exc.value)
    assert "did you mean reptile?" in msg and "metagan plugins" in msg and "\n" not in msg


def test_a_name_two_plugins_register_fails_only_when_used(capsys):
    a = plugin(metagan_register_losses=lambda registry: registry.add("same", "from first"))
    b = plugin(metagan_register_losses=lambda registry: registry.add("same", "from second"))
    c = plugin(metagan_register_losses=lambda registry: registry.add("other", "from third"))
    regs = plugins.load(entry_points=False, extra=[("first", a), ("second", b), ("third", c)])
    losses = regs.losses
    assert losses.names().count("same") == 1 and "other" in losses.names()
    assert losses.clashes() == ["same"]
    assert sorted(e.plugin for e in losses.entries() if e.name == "same") == ["first", "second"]
    assert losses.get("other") == "from third"  # the rest works
    with pytest.raises(PluginError) as e:
        losses.get("same")
    msg = str(e.value)
    assert "\n" not in msg and "plugin 'first'" in msg and "plugin 'second'" in msg
    assert "first:same or second:same" in msg
    assert losses.get("first:same") == "from first"
    assert losses.get("second:same") == "from second"
    assert losses.get("third:other") == "from third"
    with pytest.raises(UnknownNameError):
        losses.get("third:same")
    assert "same" in losses and "first:same" in losses and "nope" not in losses


def test_a_plugin_registering_one_name_twice_is_its_failure():
    twice = plugin(
        metagan_register_losses=lambda registry: [registry.add("x", 1), registry.add("x", 2)]
    )
    ok = plugin(metagan_register_losses=lambda registry: registry.add("y", 3))
    regs = plugins.load(entry_points=False, extra=[("twice", twice), ("ok", ok)])
    assert "registered the loss name 'x' twice" in regs.failed[0].error
    assert [p.name for p in regs.failed] == ["twice"]
    assert "x" not in regs.losses and regs.losses.get("y") == 3


def test_failing_plugin_does_not_take_others_down():
    def boom(registry):
        registry.add("half", object())
        raise RuntimeError("kaput")

    good = plugin(metagan_register_losses=lambda registry: registry.add("fine", object()))
    bad = plugin(metagan_register_losses=boom)
    regs = plugins.load(entry_points=False, extra=[("good", good), ("bad", bad)])
    assert regs.losses.names() == ["fine"]  # the failing plugin's partial entries are removed
    (line,) = plugins.failure_lines(regs)
    assert (
        'plugin "bad"' in line and "RuntimeError: kaput" in line and "--disable-plugin bad" in line
    )


def test_misspelt_hook_is_an_error():
    typo = plugin(metagan_register_algorithm=lambda registry: None)
    regs = plugins.load(entry_points=False, extra=[("typo", typo)])
    (info,) = regs.failed
    assert "unknown hook 'metagan_register_algorithm'" in info.error
    assert "did you mean metagan_register_algorithms?" in info.error


def test_disable_by_name_flag_and_env(monkeypatch):
    a = plugin(metagan_register_losses=lambda registry: registry.add("a", object()))
    b = plugin(metagan_register_losses=lambda registry: registry.add("b", object()))
    regs = plugins.load(entry_points=False, extra=[("pa", a), ("pb", b)], disabled=["pa"])
    assert regs.losses.names() == ["b"]
    monkeypatch.setenv(plugins.DISABLE_ENV, "pb")
    regs = plugins.load(entry_points=False, extra=[("pa", a), ("pb", b)])
    assert regs.losses.names() == ["a"] and regs.disabled == ["pb"]
    with pytest.raises(PluginError, match="cannot disable unknown plugin 'pbb'; did you mean pb"):
        plugins.load(entry_points=False, extra=[("pa", a), ("pb", b)], disabled=["pbb"])


def test_essential_plugin_cannot_be_disabled():
    with pytest.raises(PluginError, match="'losses' is essential"):
        plugins.load(disabled=["losses"])


def test_registry_listing_and_invalid_names():
    r = Registry("algorithm")
    for n in ("b", "a", "ab"):
        r.add(n, object())
    assert r.names() == ["a", "ab", "b"]
    assert r.names(include="a*") == ["a", "ab"] and r.names(exclude="a*") == ["b"]
    with pytest.raises(PluginError, match="invalid algorithm name"):
        r.add("has space", object())


def test_every_hook_is_documented():
    from pathlib import Path

    import metagan.hookspecs as hs

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for name in plugins.HOOKS:
        spec = getattr(hs, name)
        assert spec.__doc__ and "Added in" in spec.__doc__, name
        assert f"## `{name}(registry)`" in doc, f"docs/plugins.md has no section for {name}"
    for name in plugins.LIFECYCLE_HOOKS:  # the exact signature as the heading
        spec = getattr(hs, name)
        assert spec.__doc__ and "Added in" in spec.__doc__, name
        args = ", ".join(inspect.signature(spec).parameters)
        assert f"### `{name}({args})`" in doc, f"docs/plugins.md has no section for {name}"


@pytest.mark.parametrize("arch", ["dcgan", "mlp", "dagan", "fusion"])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_every_architecture_runs_and_is_vmap_safe(registries, arch, size):
    """Parametrised over the registry so a new architecture gets the same checks."""
    import torch
    from torch.func import vmap

    from metagan.models import ArchConfig, FunctionalNet, check_vmap_safe

    torch.manual_seed(0)
    pair = registries.architectures.get(arch)(ArchConfig(image_size=size, z_dim=16, width=8))
    check_vmap_safe(pair.generator, "generator", arch)
    check_vmap_safe(pair.discriminator, "discriminator", arch)
    G, D = FunctionalNet(pair.generator), FunctionalNet(pair.discriminator)
    z = torch.randn(3, 4, 16)
    # a conditional pair also gets each task's shots (T, K, C, H, W)
    cond = (torch.rand(3, 2, 1, size, size) * 2 - 1,) if pair.conditional else ()
    theta = G.init_flat().expand(3, -1).clone()
    theta[1] += 0.01 * torch.randn_like(theta[1])
    x = vmap(G)(theta, z, *cond)
    assert x.shape == (3, 4, 1, size, size) and x.abs().max() <= 1 and torch.isfinite(x).all()
    # per-task results do not depend on the other tasks in the batch
    torch.testing.assert_close(x[0], G(theta[0], z[0], *(c[0] for c in cond)))
    logits = vmap(D)(D.init_flat().expand(3, -1), x, *cond)
    assert logits.shape == (3, 4)
    logits.sum().backward() if logits.requires_grad else None


def test_the_registration_examples_of_docs_plugins_md_work():
    """Each kind's example in docs/plugins.md, run as written: it registers, and the
    architecture and the loss pass their conformance checks."""
    import re
    from pathlib import Path

    from metagan.testing import check_algorithm, check_architecture

    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    wanted = {
        "architectures": next(b for b in blocks if "def metagan_register_architectures" in b),
        "algorithms": next(b for b in blocks if "class HalfReptile" in b)
        + next(b for b in blocks if "def metagan_register_algorithms" in b),
        "losses": next(b for b in blocks if "def metagan_register_losses" in b),
    }
    mods = {}
    for kind, code in wanted.items():
        mods[kind] = types.ModuleType(f"doc_{kind}")
        exec(compile(code, f"docs/plugins.md ({kind})", "exec"), mods[kind].__dict__)
    regs = plugins.load(entry_points=False, extra=[(f"doc{k}", m) for k, m in mods.items()])
    assert not regs.failed
    check_architecture(regs.architectures.get("tiny"))
    check_algorithm(regs.algorithms.get("halfreptile"))
    loss = regs.losses.get("mylogistic")
    import math

    import torch

    def softplus(x):
        return math.log1p(math.exp(x))

    real, fake = torch.tensor([3.0, -1.0]), torch.tensor([0.5, -2.0])
    expect = (softplus(-3.0) + softplus(1.0)) / 2 + (softplus(0.5) + softplus(-2.0)) / 2
    assert float(loss.d_loss(real, fake)) == pytest.approx(expect, rel=1e-6)
