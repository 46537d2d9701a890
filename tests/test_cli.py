"""End-to-end CLI runs on tiny settings, and every bad-input case of the core issue."""

import json
import re

import pytest
import torch
from PIL import Image

from metagan.cli import main

TINY = ["--dataset", "glyphs", "--iterations", "3", "model.width=8", "model.z_dim=16", "meta.tasks=2",
        "inner.steps=1", "data.shots=3", "data.queries=2", "run.progress=false", "run.log_every=1",
        "run.sample_every=0", "run.sample_classes=2", "run.sample_num=3"]  # fmt: skip


def train(tmp_path, *extra, name="run"):
    out = tmp_path / name
    code = main(["train", *TINY, "--out", str(out), *extra])
    return code, out


@pytest.mark.parametrize("algorithm", ["maml", "reptile", "metasgd", "finetune", "scratch"])
def test_train_each_algorithm_from_the_same_config(tmp_path, algorithm):
    code, out = train(tmp_path, "--algorithm", algorithm)
    assert code == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["meta"]["algorithm"] == algorithm
    assert (out / "samples").is_dir() and list((out / "samples").glob("*.png"))
    if algorithm != "scratch":
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in lines] == [1, 2, 3]


def test_resume_continues_exactly(tmp_path):
    code, full = train(tmp_path, "--algorithm", "fomaml", "--iterations", "4", name="full")
    assert code == 0
    code, part = train(tmp_path, "--algorithm", "fomaml", "--iterations", "2", name="part")
    assert code == 0
    code = main(
        ["train", "--resume", str(part / "checkpoint.pt"), "--iterations", "4", "--out", str(part)]
    )
    assert code == 0
    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tasks_per_s"} for r in rows]  # noqa: E731
    assert strip(a) == strip(b)
    pa = torch.load(full / "checkpoint.pt", weights_only=True)["params"]
    pb = torch.load(part / "checkpoint.pt", weights_only=True)["params"]
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0)


def test_print_config(tmp_path, capsys):
    assert main(["train", *TINY, "--algorithm", "reptile", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert '[meta]\nalgorithm = "reptile"' in out and "steps = 1" in out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trained")
    code, out = train(tmp, "--algorithm", "reptile")
    assert code == 0
    return out / "checkpoint.pt"


def test_the_class_example_of_adapt_help_works_on_the_default_dataset(trained, tmp_path, capsys):
    assert main(["adapt", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    example = re.search(r"e\.g\. (\S+) \(glyphs\)", help_text).group(1)
    out = tmp_path / "one"
    assert main(["adapt", "--checkpoint", str(trained), "--class", example, "--num", "2",
                 "--out", str(out)]) == 0  # fmt: skip
    assert f"classes = ['{example}']" in (out / "adapt.txt").read_text()


def write_images(folder, n, size=(40, 40), start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        img = Image.new("L", size, 255)
        img.paste(0, (5 + i, 5, 15 + i, 30))
        img.save(folder / f"img{i}.png")
    return folder


def test_adapt_to_user_images_and_sample(trained, tmp_path, capsys):
    imgs = write_images(tmp_path / "mine", 4)
    out = tmp_path / "adapted"
    assert main(["adapt", "--checkpoint", str(trained), "--images", str(imgs), "--shots", "3",
                 "--steps", "2", "--num", "5", "--out", str(out)]) == 0  # fmt: skip
    assert sorted(p.name for p in out.glob("sample_*.png")) == [
        f"sample_{i:03d}.png" for i in range(5)
    ]
    grid = Image.open(out / "grid.png")
    assert grid.size[0] > grid.size[1]  # one row: shots then samples
    assert "grid" in capsys.readouterr().out
    adapt = ["adapt", "--checkpoint", str(trained), "--unseen", "2", "--num", "3", "--out"]
    out2 = tmp_path / "unseen"
    assert main([*adapt, str(out2)]) == 0
    assert len(list(out2.glob("*/sample_*.png"))) == 6
    # adapting with other inner settings than trained: only inner.* may change
    out4 = tmp_path / "lower_lr"
    assert main([*adapt, str(out4), "inner.lr_g=0.001"]) == 0
    assert (out4 / "adapt.txt").is_file()
    assert main([*adapt, str(tmp_path / "no"), "model.arch=mlp"]) == 2
    assert not (tmp_path / "no").exists()
    out3 = tmp_path / "sampled"
    assert main(["sample", "--checkpoint", str(trained), "--num", "4", "--out", str(out3)]) == 0
    assert len(list(out3.glob("sample_*.png"))) == 4


def expect_error(capsys, argv, *fragments, code=2):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert err.count("\n") == 0, err
    assert err.startswith("metagan") and "error" in err
    for f in fragments:
        assert f in err, err
    return err


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--algorithm", "reptlie"], ["unknown algorithm 'reptlie'", "did you mean reptile?"]),
        (["--arch", "dcgna"], ["unknown architecture 'dcgna'", "did you mean dcgan?"]),
        (["--dataset", "glyph"], ["unknown dataset 'glyph'", "did you mean glyphs?"]),
        (["model.loss=hinj"], ["unknown loss 'hinj'", "did you mean hinge?"]),
        (["inner.steps=-2"], ["inner.steps must be >= 0"]),
        (["inner.lr_d=-0.1"], ["inner.lr_d must be a positive learning rate"]),
        (["meta.lr=0"], ["meta.lr must be a positive learning rate"]),
        (["data.shots=0"], ["data.shots must be a positive integer"]),
        (["model.width=0"], ["model.width must be a positive integer"]),
        (["meta.tasks=-1"], ["meta.tasks must be a positive integer"]),
        (["inner.stepz=1"], ["unknown config key inner.stepz; did you mean inner.steps?"]),
        (["--iterations", "0"], ["--iterations must be a positive integer"]),
    ],
)
def test_bad_train_input(tmp_path, capsys, extra, fragments):
    out = tmp_path / "never"
    expect_error(capsys, ["train", *TINY, "--out", str(out), *extra], *fragments)
    assert not out.exists()  # nothing half-written


def test_class_with_too_few_images(tmp_path, capsys):
    root = tmp_path / "data"
    for c in range(3):
        write_images(root / f"class{c}", 6)
    write_images(root / "tiny", 3)
    out = tmp_path / "never"
    expect_error(capsys, ["train", *TINY, "--dataset", "folder", "--data-root", str(root), "--out", str(out),
                          "data.shots=3", "data.queries=2", "data.test_fraction=0.25"],
                 "'tiny' has 3 images", "5")  # fmt: skip
    assert not out.exists()


def test_bad_adapt_input(trained, tmp_path, capsys):
    out = tmp_path / "never"
    base = ["adapt", "--checkpoint", str(trained), "--shots", "2", "--out", str(out)]
    bad = write_images(tmp_path / "bad", 2)
    (bad / "zzz.png").write_bytes(b"not an image at all")
    expect_error(capsys, [*base, "--images", str(bad)], "zzz.png")
    # (images of different sizes are no error: they are resized, tests/test_data.py)
    few = write_images(tmp_path / "few", 1)
    expect_error(capsys, [*base, "--images", str(few)], "1 image", "--shots")
    expect_error(capsys, [*base, "--images", str(tmp_path / "missing")], "missing")
    expect_error(capsys, [*base, "--class", "alphabet00/charr"], "alphabet00/charr")
    expect_error(capsys, ["adapt", "--checkpoint", str(trained), "--images", str(few), "--shots", "0", "--out", str(out)],
                 "--shots must be a positive integer")  # fmt: skip
    assert not out.exists()


def test_bad_checkpoints(trained, tmp_path, capsys):
    out = tmp_path / "never"
    imgs = write_images(tmp_path / "mine", 3)
    argv = lambda c: ["adapt", "--checkpoint", str(c), "--images", str(imgs), "--out", str(out)]  # noqa: E731
    expect_error(capsys, argv(tmp_path / "nope.pt"), "does not exist")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained.read_bytes()[:1000])
    expect_error(capsys, argv(corrupt), "corrupt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    expect_error(capsys, argv(foreign), "not a metagan checkpoint")
    # a checkpoint from another architecture
    expect_error(capsys, ["train", "--resume", str(trained), "--arch", "mlp", "--out", str(out)],
                 "architecture 'dcgan', not 'mlp'")  # fmt: skip
    assert not out.exists()


def test_bench_smoke(tmp_path, capsys):
    """`metagan bench` at a tiny size: every mode's row, side by side (no speed assertion)."""
    out = tmp_path / "bench.jsonl"
    assert main(["bench", "--algorithm", "fomaml,maml", "--tasks", "1,2", "--inner-steps", "1", "--width", "8",
                 "--z-dim", "16", "--repeats", "2", "--warmup", "0", "--json", str(out)]) == 0  # fmt: skip
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["algorithm"], r["tasks"], r["mode"]) for r in rows] == [
        (a, t, m) for a in ("fomaml", "maml") for t in (1, 2) for m in ("sequential", "batched")
    ]
    for r in rows:
        assert r["sec_per_iter"] > 0 and r["peak_mem_mb"] > 0 and r["matmul_gflops"] > 0
        assert r["gflop_per_iter"] > 0 and r["speedup_vs_sequential"] > 0
    # the sequential loop does the same work per task: twice the tasks, twice the FLOPs
    seq = {
        (r["algorithm"], r["tasks"]): r["gflop_per_iter"] for r in rows if r["mode"] == "sequential"
    }
    for a in ("fomaml", "maml"):
        assert seq[(a, 2)] == pytest.approx(2 * seq[(a, 1)], rel=0.01)
    table = capsys.readouterr().out
    assert "| fomaml | 2 | batched |" in table and "GFLOP/s" in table
    assert main(["bench", "--modes", "batched-ext"]) == 2  # no GPU here: one-line error


def test_train_and_adapt_on_real_omniglot(tmp_path):
    """Real Omniglot drawings (the shipped small1 subset): meta-test alphabet held out, adapt to
    one of its classes."""
    from conftest import SMALL1

    out = tmp_path / "omni"
    argv = ["train", *TINY, "--dataset", "omniglot", "--data-root", str(SMALL1), "--out", str(out),
            'data.test_groups=["Latin"]', "--algorithm", "reptile"]  # fmt: skip
    assert main(argv) == 0
    cfg = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    assert cfg["data"]["dataset"] == "omniglot" and cfg["data"]["test_groups"] == ["Latin"]
    ad = tmp_path / "adapted"
    assert main(["adapt", "--checkpoint", str(out / "checkpoint.pt"), "--class", "Latin/character03",
                 "--shots", "3", "--num", "4", "--out", str(ad)]) == 0  # fmt: skip
    assert len(list(ad.glob("sample_*.png"))) == 4


def test_training_on_every_class_ships_a_generator_with_no_unseen_classes(tmp_path, capsys):
    # data.test_fraction = 0: every class trains (the shipped checkpoints); the sample grid
    # shows meta-train classes, and asking for unseen classes is a one-line error
    code, out = train(tmp_path, "data.test_fraction=0", "run.sample_every=3")
    assert code == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["data"]["test_fraction"] == 0
    assert list((out / "samples").glob("*.png"))
    capsys.readouterr()
    expect_error(capsys, ["adapt", "--checkpoint", str(out / "checkpoint.pt"), "--unseen", "2",
                          "--out", str(tmp_path / "a")],
                 "trained on every class", "--images DIR")  # fmt: skip
    assert not (tmp_path / "a").exists()
