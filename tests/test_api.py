"""The Python API (metagan.load / FewShotGenerator / metagan.train), shipped checkpoints by
name (metagan.pretrained), and docs/api.md's examples, run as they are written."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import metagan
from metagan import pretrained
from metagan.cli import main
from metagan.errors import CheckpointError, ConfigError

REPO = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "glyphs", "--iterations", "3", "model.width=8", "model.z_dim=16",
        "meta.tasks=2", "inner.steps=1", "data.shots=3", "data.queries=2", "run.progress=false",
        "run.sample_every=0", "run.sample_classes=2", "run.sample_num=3"]  # fmt: skip


def tiny_config(out) -> metagan.Config:
    """TINY, written with the dataclasses."""
    return metagan.Config(
        data=metagan.DataConfig(dataset="glyphs", shots=3, queries=2),
        model=metagan.ModelConfig(width=8, z_dim=16),
        inner=metagan.InnerConfig(steps=1),
        meta=metagan.MetaConfig(tasks=2, iterations=3),
        run=metagan.RunConfig(
            out=str(out), progress=False, sample_every=0, sample_classes=2, sample_num=3
        ),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run through the CLI, and the same config through metagan.train."""
    tmp = tmp_path_factory.mktemp("api")
    assert main(["train", *TINY, "--out", str(tmp / "cli")]) == 0
    res = metagan.train(tiny_config(tmp / "api"))
    return tmp, res


def test_train_from_dataclasses_is_the_cli_run(run):
    tmp, res = run
    assert isinstance(res, metagan.TrainResult)
    assert res.step == 3 and res.checkpoint == tmp / "api" / "checkpoint.pt"
    assert set(res.metrics) >= {"step", "loss_d", "loss_g", "tasks_per_s"}
    a = torch.load(res.checkpoint, weights_only=True)
    b = torch.load(tmp / "cli" / "checkpoint.pt", weights_only=True)
    assert a["config"] == {**b["config"], "run": {**b["config"]["run"], "out": str(tmp / "api")}}
    for k in b["params"]:
        torch.testing.assert_close(a["params"][k], b["params"][k], rtol=0, atol=0)


def _shot_files(folder: Path, k: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(k):
        img = np.full((40, 40), 255, np.uint8)
        img[rng.integers(5, 20) : 30, 8 + i : 14 + i] = 0  # a dark bar, moved a little
        paths.append(folder / f"shot_{i}.png")
        Image.fromarray(img, mode="L").save(paths[-1])
    return paths


def test_adapt_and_sample_equal_the_adapt_command(run):
    tmp, res = run
    paths = _shot_files(tmp / "shots")
    out = tmp / "adapted"
    assert main(["adapt", "--checkpoint", str(res.checkpoint), "--images", str(tmp / "shots"),
                 "--shots", "3", "--steps", "2", "--num", "4", "--seed", "7",
                 "--out", str(out)]) == 0  # fmt: skip
    g = metagan.load(res.checkpoint)
    x = g.adapt(paths, steps=2, seed=7).sample(4)
    assert x.shape == (4, *g.image_shape) == (4, 1, 28, 28) and x.device.type == "cpu"
    written = [np.asarray(Image.open(out / f"sample_{i:03d}.png")) for i in range(4)]
    assert all(np.array_equal(np.asarray(p), w) for p, w in zip(g.to_pil(x), written))
    # the same shots as PIL images and as the converted tensor adapt identically
    pil = [Image.open(p) for p in paths]
    y = g.adapt(pil, steps=2, seed=7).sample(4)
    z = g.adapt(g.images(paths), steps=2, seed=7).sample(4)
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    torch.testing.assert_close(z, x, rtol=0, atol=0)
    # adapting moves the generator: 0 steps give the meta-learned init's samples
    a0 = g.adapt(paths, steps=0, seed=7)
    assert not torch.equal(a0.sample(4, seed=1), g.adapt(paths, steps=2).sample(4, seed=1))
    torch.testing.assert_close(a0.sample(4, seed=1), g.sample(4, seed=1), rtol=0, atol=0)


def test_images_are_checked(run):
    _, res = run
    g = metagan.load(res.checkpoint)
    with pytest.raises(ConfigError, match=r"images must be \(K, 1, 28, 28\).*got \(3, 1, 32, 32\)"):
        g.adapt(torch.zeros(3, 1, 32, 32))
    with pytest.raises(ConfigError, match="no images given"):
        g.adapt([])
    with pytest.raises(ConfigError, match="num must be a positive"):
        g.sample(0)


def test_shipped_checkpoints_by_name(run, monkeypatch, tmp_path, capsys):
    _, res = run
    shipped = tmp_path / "pretrained"
    shipped.mkdir()
    shutil.copy(res.checkpoint, shipped / "glyphs-tiny.pt")
    (shipped / "glyphs-tiny.md").write_text("# glyphs-tiny\n\nA 3-iteration test model.\n")
    shutil.copy(res.checkpoint, shipped / "no-card.pt")  # no model card: not offered
    monkeypatch.setattr(pretrained, "FOLDER", shipped)
    assert pretrained.available() == ["glyphs-tiny"]
    assert pretrained.path("glyphs-tiny") == shipped / "glyphs-tiny.pt"
    assert pretrained.model_card("glyphs-tiny").startswith("# glyphs-tiny")
    by_name, by_path = metagan.load("glyphs-tiny"), metagan.load(res.checkpoint)
    torch.testing.assert_close(by_name.sample(3), by_path.sample(3), rtol=0, atol=0)
    with pytest.raises(CheckpointError) as e:
        metagan.load("glyphs-tiyn")
    msg = str(e.value)
    assert "\n" not in msg and "did you mean glyphs-tiny?" in msg
    assert "(shipped checkpoints: glyphs-tiny)" in msg
    # every --checkpoint of the command line takes the name as well
    out = tmp_path / "init"
    assert main(["sample", "--checkpoint", "glyphs-tiny", "--num", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("sample_*.png"))) == 2
    capsys.readouterr()
    assert main(["adapt", "--checkpoint", "glyphs-tiyn", "--unseen", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean glyphs-tiny?" in err
    # a path-like argument stays a path: its absence is reported as a missing file
    with pytest.raises(CheckpointError, match="does not exist"):
        metagan.load(tmp_path / "nope.pt")


def test_the_package_face():
    assert sorted(metagan.__all__) == sorted(set(metagan.__all__))
    for name in metagan.__all__:
        assert getattr(metagan, name) is not None
    doc = (REPO / "docs" / "api.md").read_text()
    missing = [
        n
        for n in metagan.__all__
        if n != "__version__" and f"`{n}" not in doc and f"`metagan.{n}" not in doc
    ]
    assert missing == [], "names exported from metagan but not in docs/api.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_api_examples_run(tmp_path, monkeypatch):
    """Every ```python block of docs/api.md, in order, in one namespace, in an empty folder."""
    blocks = _python_blocks((REPO / "docs" / "api.md").read_text())
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "docs_api"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/api.md python block {i + 1}", "exec"), ns)  # noqa: S102
    assert (tmp_path / "runs" / "tiny" / "checkpoint.pt").is_file()


def test_bad_inputs_through_the_api_are_one_clear_exception(run, tmp_path):
    """The issue's list, each one exception of the CLI's types with a one-line message."""
    from metagan.errors import DataError

    tmp, res = run
    g = metagan.load(res.checkpoint)
    paths = _shot_files(tmp_path / "shots")
    with pytest.raises(ConfigError, match=r"^num 1000000000 for 1 class\(es\) needs at least"):
        g.sample(10**9)  # refused with an estimate, before anything is allocated
    with pytest.raises(ConfigError, match=r"^num must be a positive integer, got 2\.5$"):
        g.sample(2.5)
    with pytest.raises(ConfigError, match=r"^steps must be an integer >= 0, got -1$"):
        g.adapt(paths, steps=-1)
    with pytest.raises(ConfigError, match=r"^seed must be an integer >= 0"):
        g.sample(2, seed=-1)
    with pytest.raises(ConfigError, match="is not conditional"):
        g.sample(2, shots=paths)
    x = g.images(paths)  # (3, 1, 28, 28) in the model's range: bright strokes on -1
    unit = (1 - x) / 2  # the same drawings as [0, 1] dark-on-white tensors (torchvision's habit)
    with pytest.raises(DataError, match=r"look like \[0, 1\] values.*pass 1 - 2 \* x"):
        g.adapt(unit)
    # the mapping the message gives restores the model's input exactly
    torch.testing.assert_close(
        g.adapt(1 - 2 * unit, steps=2, seed=7).sample(3),
        g.adapt(paths, steps=2, seed=7).sample(3),
        rtol=0,
        atol=0,
    )
    with pytest.raises(DataError, match=r"^image values must be in \[-1, 1\]"):
        g.adapt(x * 255)
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match=r"^images contain 1 non-finite value\(s\) \(NaN or inf\)"):
        g.adapt(nan)
    # one path is one image (not a sequence of characters); a folder is every image in it
    one = g.adapt(str(paths[0]), seed=1)
    assert one.shots.shape == (1, 1, 28, 28)
    torch.testing.assert_close(one.sample(2), g.adapt([paths[0]], seed=1).sample(2))
    folder = g.adapt(tmp_path / "shots", seed=1)
    torch.testing.assert_close(folder.sample(2), g.adapt(paths, seed=1).sample(2))


def test_sample_through_the_api_is_the_sample_command(run, tmp_path):
    _, res = run
    out = tmp_path / "s"
    assert main(["sample", "--checkpoint", str(res.checkpoint), "--num", "3", "--seed", "5",
                 "--out", str(out)]) == 0  # fmt: skip
    g = metagan.load(res.checkpoint)
    written = [np.asarray(Image.open(out / f"sample_{i:03d}.png")) for i in range(3)]
    pil = g.to_pil(g.sample(3, seed=5))
    assert all(np.array_equal(np.asarray(p), w) for p, w in zip(pil, written))


def test_plugin_problems_are_visible_in_python(run, monkeypatch):
    """A plugin that failed to load warns (the CLI prints the same line); a checkpoint made
    with a plugin that is missing names it; a plugin algorithm's exception names it."""
    import types

    from metagan import plugins
    from metagan.api import PluginLoadWarning
    from metagan.errors import PluginError

    _, res = run
    broken = types.ModuleType("broken")
    broken.metagan_register_losses = plugins.hookimpl(lambda registry: 1 / 0)
    regs = plugins.load(extra=[("broken", broken)])
    monkeypatch.setattr(plugins, "get", lambda *a, **k: regs)
    with pytest.warns(PluginLoadWarning, match=r'^Error loading plugin "broken".*ZeroDivision'):
        metagan.load(res.checkpoint)
    ckpt = torch.load(res.checkpoint, weights_only=True)
    made = ckpt["plugins"]["algorithm"]
    assert (made["plugin"], made["dist"]) == ("algorithms", "metagan")
    without = plugins.load(disabled=["algorithms"])
    with pytest.raises(CheckpointError) as e:
        metagan.load(res.checkpoint, registries=without)
    assert f"made with algorithm {made['name']!r} from plugin 'algorithms' (metagan==" in str(
        e.value
    )
    assert "drop --disable-plugin algorithms" in str(e.value)
    # an exception inside a plugin algorithm's meta_gradients names the algorithm and plugin
    g = metagan.load(res.checkpoint, registries=regs)
    alg = g.session.algorithm
    monkeypatch.setattr(alg, "meta_gradients", lambda *a: [][1])
    with pytest.raises(PluginError, match=r"^algorithm '\w+' \(plugin 'algorithms'\) raised in "
                       r"meta_gradients: IndexError: list index out of range$"):  # fmt: skip
        alg.step(g.params, None, None, g.session.engine)
