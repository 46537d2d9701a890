"""Colour photographs end to end: channels read from the files, resize + centre crop against
hand-computed crops, the architectures at 3 channels (batched == sequential), and a tiny run
on the Caltech-101 subset the repository carries (tests/data/caltech101, CC BY 4.0) that
trains, adapts to five photographs and samples in colour."""

import json

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image
from test_cli import TINY
from torch import nn

import metagan
from metagan import config
from metagan.algorithm import MetaConfig
from metagan.cli import main
from metagan.data.grid import save_grid
from metagan.data.images import to_pil, to_tensor
from metagan.data.tasks import TaskBatch
from metagan.inner import BatchedEngine, InnerConfig, Noise
from metagan.models import ArchConfig
from metagan.sequential import SequentialEngine
from metagan.session import Session
from metagan_builtin.datasets.folder import FolderDataset

CALTECH = REPO / "tests" / "data" / "caltech101"


def rgb(w, h, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def pixels(x):  # (N, 3, S, S) in [-1, 1] -> (N, S, S, 3) uint8
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------- resize and crop
def test_photographs_are_centre_cropped_to_the_hand_computed_box():
    wide, tall = rgb(96, 32, 1), rgb(32, 64, 2)
    x = to_tensor([Image.fromarray(wide), Image.fromarray(tall)], 32, invert=False, channels=3)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    # 96 x 32 -> the shorter side is already 32: the middle 32 columns, untouched
    np.testing.assert_array_equal(pixels(x)[0], wide[:, 32:64])
    # 32 x 64 (portrait): rows 16..48
    np.testing.assert_array_equal(pixels(x)[1], tall[16:48])


def test_a_larger_photograph_is_scaled_down_after_the_crop():
    # 64 x 128 portrait: top quarter red, middle half green, bottom quarter blue. At 32 px the
    # crop keeps rows 32..96 of the original: only green survives.
    a = np.zeros((128, 64, 3), np.uint8)
    a[:32, :, 0] = 255
    a[32:96, :, 1] = 255
    a[96:, :, 2] = 255
    x = to_tensor([Image.fromarray(a)], 32, invert=False, channels=3)
    assert (pixels(x)[0] == np.array([0, 255, 0], np.uint8)).all()
    # and 128 px upscales a 96 x 32 strip's middle third to the whole image
    up = to_tensor([Image.fromarray(rgb(96, 32, 3))], 128, invert=False, channels=3)
    assert up.shape == (1, 3, 128, 128) and up.abs().max() <= 1


def test_colour_conversions_and_round_trip(tmp_path):
    # transparency is white paper, grey modes get three equal channels, RGB round-trips
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    gray = Image.new("L", (8, 8), 64)
    x = to_tensor([rgba, gray], 28, invert=False, channels=3)
    assert torch.equal(x[0], torch.ones(3, 28, 28))
    torch.testing.assert_close(x[1], torch.full((3, 28, 28), 64 * 2 / 255 - 1))
    photo = rgb(28, 28, 4)
    back = to_pil(to_tensor([Image.fromarray(photo)], 28, invert=False, channels=3), invert=False)
    assert back[0].mode == "RGB" and np.array_equal(np.asarray(back[0]), photo)
    grid = Image.open(save_grid([x, x[:1]], tmp_path / "g.png", invert=False))
    assert grid.mode == "RGB" and grid.size == (2 + 2 * 30, 2 + 2 * 30)
    with pytest.raises(ValueError, match="never inverted"):
        to_tensor([rgba], 28, invert=True, channels=3)


# ---------------------------------------------------------------- channels from the files
def save(img, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def test_folder_dataset_reads_its_channels_from_the_files(tmp_path):
    for c in ("a", "b"):
        for j in range(3):
            save(Image.new("L", (20 + j, 20), 255), tmp_path / c / f"{j}.png")
    grey_palette = Image.new("L", (20, 20), 100).convert("P")
    save(grey_palette, tmp_path / "b" / "p.png")
    assert FolderDataset(root=tmp_path).channels == 1
    colour_palette = Image.new("RGB", (20, 20), (200, 10, 10)).convert("P")
    save(colour_palette, tmp_path / "b" / "q.png")
    assert FolderDataset(root=tmp_path).channels == 3
    (tmp_path / "b" / "q.png").unlink()
    save(Image.fromarray(rgb(30, 20)), tmp_path / "a" / "photo.jpg")
    ds = FolderDataset(root=tmp_path)
    assert ds.channels == 3 and ds.classes[0].num_images == 4


def session(root, *extra):
    return Session(config.load(None, [f'data.root="{root}"', "data.dataset=folder", *extra]))


def test_session_settles_channels_and_never_inverts_colour(tmp_path):
    s = session(CALTECH, "data.image_size=32")
    assert (s.cfg.data.channels, s.cfg.data.invert, s.arch_cfg.channels) == (3, False, 3)
    x = s.cache.get(0)
    assert x.shape == (8, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    # explicit channels convert: the photographs in grey (1 channel, inverted as asked) ...
    g = session(CALTECH, "data.image_size=32", "data.channels=1")
    assert (g.cfg.data.channels, g.cfg.data.invert) == (1, True)
    assert g.cache.get(0).shape == (8, 1, 32, 32)
    # ... and grey drawings as three equal channels
    for j in range(2):
        save(Image.new("L", (20, 20), 40 * j), tmp_path / "c" / f"{j}.png")
    t = session(tmp_path, "data.channels=3", "data.test_fraction=0")
    x = t.cache.get(0)
    assert t.cfg.data.invert is False and torch.equal(x[:, 0], x[:, 2])


# ---------------------------------------------------------------- the engines in colour
@pytest.mark.parametrize("arch, name", [("dagan", "fomaml"), ("dcgan", "maml")])
def test_colour_meta_gradients_batched_equal_sequential(registries, float64, arch, name):
    torch.manual_seed(0)
    pair = registries.architectures.get(arch)(ArchConfig(channels=3, z_dim=8, width=4))
    cfg = InnerConfig(steps=2, lr_g=0.05, lr_d=0.05)
    loss = registries.losses.get("nonsaturating")
    batched, seq = BatchedEngine(pair, loss, cfg), SequentialEngine(pair, loss, cfg)
    algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
    params = {"g": nn.Parameter(batched.G.init_flat()), "d": nn.Parameter(batched.D.init_flat())}
    g = torch.Generator().manual_seed(0)
    batch = TaskBatch(support=torch.rand(2, 2, 3, 28, 28, generator=g) * 2 - 1,
                      query=torch.rand(2, 2, 3, 28, 28, generator=g) * 2 - 1,
                      classes=torch.arange(2))  # fmt: skip
    noise = Noise.draw(2, 2, 2, 8, generator=torch.Generator().manual_seed(1))
    a, b = algo.step(params, batch, noise, batched), algo.step(params, batch, noise, seq)
    for k in params:
        torch.testing.assert_close(a.grads[k], b.grads[k], msg=f"{arch}/{name}: {k}")
        assert a.grads[k].abs().sum() > 0


# ---------------------------------------------------------------- end to end
def test_train_adapt_and_sample_colour_photographs(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *TINY, "--dataset", "folder", "--data-root", str(CALTECH), "--arch", "dagan",
            "--algorithm", "fomaml", "--out", str(out), "data.image_size=32", "model.width=4",
            "data.test_fraction=0.25", "run.sample_classes=1"]  # fmt: skip
    assert main(argv) == 0
    ckpt = out / "checkpoint.pt"
    saved = torch.load(ckpt, weights_only=True)["config"]["data"]
    assert (saved["channels"], saved["invert"]) == (3, False)
    assert Image.open(next((out / "samples").glob("*.png"))).mode == "RGB"
    shots = CALTECH / "flamingo"
    ad = tmp_path / "adapted"
    assert main(["adapt", "--checkpoint", str(ckpt), "--images", str(shots), "--shots", "5",
                 "--num", "3", "--seed", "4", "--out", str(ad)]) == 0  # fmt: skip
    written = sorted(ad.glob("sample_*.png"))
    assert len(written) == 3 and Image.open(ad / "grid.png").mode == "RGB"
    # the API adapts to the same five photographs (paths of any size) and gives those samples
    g = metagan.load(ckpt)
    assert g.image_shape == (3, 32, 32)
    x = g.adapt(sorted(shots.glob("*.jpg"))[:5], seed=4).sample(3)
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1 and x.std() > 0
    files = [np.asarray(Image.open(f)) for f in written]
    assert all(p.mode == "RGB" for p in g.to_pil(x))
    assert all(np.array_equal(np.asarray(p), f) for p, f in zip(g.to_pil(x), files))
    sm = tmp_path / "sampled"
    assert main(["sample", "--checkpoint", str(ckpt), "--images", str(shots), "--num", "2",
                 "--out", str(sm)]) == 0  # fmt: skip
    assert Image.open(sm / "sample_000.png").size == (32, 32)
    capsys.readouterr()


# ---------------------------------------------------------------- evaluation on photographs
def ramp(n=1, size=32):  # (n, 3, S, S): each pixel's value is its x coordinate (pixel centres)
    xs = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    return xs.expand(n, 3, size, size).clone()


def test_flip_and_crop_move_pixels_as_computed_by_hand():
    from metagan.eval.photo import NO_COLOUR, NO_CROP, PhotoJitter

    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    flip = PhotoJitter(flip=1.0, crop_scale=NO_CROP, **NO_COLOUR)
    torch.testing.assert_close(flip(x, torch.Generator().manual_seed(1)), x.flip(-1))
    same = PhotoJitter(flip=0.0, crop_scale=NO_CROP, **NO_COLOUR)
    torch.testing.assert_close(same(x, torch.Generator()), x)
    # a square crop of a quarter of the area, anywhere: on the ramp v(x) = x, the output is
    # v = 0.5 * x + c with |c| <= 0.5 (the crop stays inside the image)
    crop = PhotoJitter(flip=0.0, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), **NO_COLOUR)
    y = crop(ramp(6), torch.Generator().manual_seed(2))
    c = y - 0.5 * ramp(6)
    torch.testing.assert_close(c, c[..., :1, :1].expand_as(c))
    assert c.abs().max() <= 0.5 + 1e-6 and c[:, 0, 0, 0].std() > 0.05


def test_colour_jitter_scales_brightness_and_keeps_grey_grey():
    from metagan.eval.photo import NO_CROP, PhotoJitter

    grey = torch.zeros(8, 3, 8, 8)  # mid-grey, 0.5 in [0, 1]
    bright = PhotoJitter(flip=0.0, crop_scale=NO_CROP, contrast=0.0, saturation=0.0)
    y = (bright(grey, torch.Generator().manual_seed(3)) + 1) / 2  # 0.5 * f, f in [0.8, 1.2]
    assert torch.equal(y, y[:, :1, :1, :1].expand_as(y))
    assert y.min() >= 0.4 - 1e-6 and y.max() <= 0.6 + 1e-6 and y.std() > 0
    # contrast and saturation leave a flat grey image exactly as it is
    flat = PhotoJitter(flip=0.0, crop_scale=NO_CROP, brightness=0.0)
    torch.testing.assert_close(flat(grey, torch.Generator().manual_seed(4)), grey)


def test_eval_on_photographs_with_the_colour_references(tmp_path):
    from metagan.eval import features as F

    data = ["--dataset", "folder", "--data-root", str(CALTECH), "data.image_size=32",
            "data.test_fraction=0.5"]  # fmt: skip
    run = ["--arch", "dagan", "--algorithm", "scratch", "model.width=4", "model.z_dim=16",
           "inner.steps=1", "data.shots=2", "run.progress=false", "run.sample_every=0"]  # fmt: skip
    assert main(["train", *data, *run, "--out", str(tmp_path / "r")]) == 0
    ckpt = tmp_path / "r" / "checkpoint.pt"
    feats = tmp_path / "features.pt"
    assert main(["eval", "fit-features", "--checkpoint", str(ckpt), "--steps", "20",
                 "--out", str(feats)]) == 0  # fmt: skip
    assert F.load(feats).net.channels == 3
    refs = ["shots", "affine", "flip", "crop", "colour", "photo"]
    assert main(["eval", "--features", str(feats), "--generator", f"random={ckpt}",
                 "--reference", *refs, "--shots", "2", "--num", "4", "--augment-k", "2",
                 "--augment-num", "4", "--classifier-steps", "10", "--augment-steps", "4", "6",
                 "--mix", "0.5", "--val-classes", "2", "--bootstrap", "2",
                 "--out", str(tmp_path / "e")]) == 0  # fmt: skip
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    entry = res["shots"]["2"]
    assert np.isfinite(entry["floor"]["fid"])
    assert set(entry["rows"]) == {*refs, "random"}
    assert all(np.isfinite(r["fid"]) for r in entry["rows"].values())
    assert entry["rows"]["shots"]["memorisation"] < 1e-4 < entry["rows"]["crop"]["memorisation"]
    assert res["rows"]["photo"]["reference"] == "photo" and res["rows"]["photo"]["flip"] == 0.5
    assert res["rows"]["affine"] == {"reference": "free", "parts": ["affine"]}
    # the augmentation protocol ran on colour, the affine free row filling with the border
    assert 0 <= res["augment"]["2"]["real"] <= 1
