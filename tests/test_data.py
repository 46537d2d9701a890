"""Tests of metagan.data and the built-in datasets (glyphs, omniglot, folder).

Omniglot tests read ``tests/data/omniglot/images_background_small1.zip``, a subset of the
official zip shipped with the tests (every alphabet, its first 6 characters, all 20 drawings;
tests/data/omniglot/README.md), so they run on any clone.
Nothing here touches the network: the download tests serve local files through a patched opener.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL1
from PIL import Image

from metagan.config import DataConfig
from metagan.data.base import ClassDataset, ClassRef
from metagan.data.grid import save_grid
from metagan.data.images import read_image_dir, to_pil, to_tensor
from metagan.data.tasks import ImageCache, TaskSampler, split_classes
from metagan.errors import CheckpointError, ConfigError, DataError
from metagan_builtin.datasets import omniglot_download as download
from metagan_builtin.datasets.folder import FolderDataset
from metagan_builtin.datasets.glyphs import _DISTINCT, GlyphsDataset, _thumbnail
from metagan_builtin.datasets.omniglot import OmniglotDataset

SMALL1_ALPHABETS = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
SMALL1_MD5 = (
    "e704a628b5459e08445c13499850abc4"  # the official zip's (github.com/brendenlake/omniglot)
)
CHARS = 6  # characters per alphabet in the shipped subset (tests/data/omniglot/make_subset.py)
CLASSES = 5 * CHARS


@pytest.fixture(scope="module")
def small1() -> Path:
    assert SMALL1.is_file(), f"the shipped Omniglot subset {SMALL1} is missing from the checkout"
    return SMALL1


@pytest.fixture(scope="module")
def omniglot(small1) -> OmniglotDataset:
    return OmniglotDataset(root=small1)


@pytest.fixture(scope="module")
def glyphs() -> GlyphsDataset:
    return GlyphsDataset(seed=0)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, f"error message spans several lines: {msg!r}"
    return msg


class Counted(ClassDataset):
    """A fake dataset whose image j of every class is a flat grey of value 10 * j + 5.

    The value survives resizing exactly, so a sampled image tells which drawing it was.
    """

    def __init__(self, counts: list[int], *, groups: list[str | None] | None = None):
        super().__init__(seed=0)
        groups = groups or [None] * len(counts)
        self.classes = [ClassRef(f"c{i}", g, n) for i, (n, g) in enumerate(zip(counts, groups))]
        self.loads: list[int] = []

    def load_class(self, index):
        self.loads.append(index)
        n = self.classes[index].num_images
        return [Image.new("L", (12, 12), 10 * j + 5) for j in range(n)]


def drawing_ids(x: torch.Tensor) -> torch.Tensor:
    """(..., 1, S, S) images of a Counted dataset (invert=False) -> (...) drawing ids."""
    pixel = ((x[..., 0, 0, 0] + 1) * 127.5).round()
    return ((pixel - 5) / 10).round().long()


# ---------------------------------------------------------------- glyphs


def test_glyphs_counts_and_names(glyphs):
    assert len(glyphs.groups()) >= 20
    assert len(glyphs.classes) >= 1000
    assert all(c.num_images == 20 for c in glyphs.classes)
    names = [c.name for c in glyphs.classes]
    assert len(set(names)) == len(names)
    assert glyphs.classes[0] == ClassRef("alphabet00/character00", "alphabet00", 20)
    assert all(c.name.startswith(c.group + "/") for c in glyphs.classes)
    assert glyphs.class_index(glyphs.classes[123].name) == 123


def test_glyphs_images_are_dark_strokes_on_white(glyphs):
    images = glyphs.load_class(7)
    assert len(images) == 20
    for img in images:
        a = np.asarray(img)
        assert img.mode == "L" and img.size == (64, 64)
        assert a[0].min() == 255 and a[-1].min() == 255  # the page's edges are blank
        assert 0.02 < (a < 128).mean() < 0.4  # some ink, mostly paper
        assert a.min() < 40


def test_glyphs_deterministic_from_seed_in_any_order():
    a, b = GlyphsDataset(seed=5), GlyphsDataset(seed=5)
    b.load_class(900)  # load other classes first: must not change class 3's pixels
    b.load_class(1)
    first = [np.asarray(im) for im in a.load_class(3)]
    again = [np.asarray(im) for im in b.load_class(3)]
    assert all(np.array_equal(x, y) for x, y in zip(first, again))
    other = GlyphsDataset(seed=6)
    differ = [np.asarray(im) for im in other.load_class(3)]
    assert not all(np.array_equal(x, y) for x, y in zip(first, differ))
    # other alphabets, not just other noise: the clean characters differ
    mine, theirs = a.alphabet(0)[1][0][0].points, other.alphabet(0)[1][0][0].points
    assert mine.shape != theirs.shape or not np.allclose(mine, theirs)


def test_glyphs_drawings_of_a_character_resemble_each_other(glyphs):
    """Mean pixel distance between drawings of one character is below that to other
    characters of the same alphabet, for nearly every pair of characters."""
    wins = total = 0
    ratios = []
    for group in ["alphabet00", "alphabet07", "alphabet15", "alphabet22", "alphabet29"]:
        idx = [i for i, c in enumerate(glyphs.classes) if c.group == group][:6]
        x = torch.stack([to_tensor(glyphs.load_class(i), 28, invert=True) for i in idx])
        x = x.flatten(2)  # (C, 20, D)
        for c in range(len(idx)):
            within = torch.cdist(x[c], x[c], p=1).sum() / (20 * 19)
            for o in range(len(idx)):
                if o != c:
                    between = torch.cdist(x[c], x[o], p=1).mean()
                    wins += int(within < between)
                    total += 1
                    ratios.append((within / between).item())
    assert wins / total >= 0.9, f"only {wins}/{total} character pairs are told apart"
    assert np.mean(ratios) < 0.85


def test_glyphs_characters_of_an_alphabet_are_distinct(glyphs):
    for a in range(0, 30, 6):
        style, chars = glyphs.alphabet(a)
        thumbs = np.stack([_thumbnail(c, style.width) for c in chars])  # (C, 24 * 24)
        dist = np.abs(thumbs[:, None] - thumbs[None]).mean(-1)
        np.fill_diagonal(dist, np.inf)
        assert dist.min() >= _DISTINCT, f"two characters of alphabet {a} look alike"


def test_glyphs_rejects_root_and_bad_options():
    with pytest.raises(ConfigError) as e:
        GlyphsDataset(root="data/")
    assert "reads no files" in one_line(e)
    with pytest.raises(ConfigError, match="num_alphabets must be an integer >= 1"):
        GlyphsDataset(num_alphabets=0)
    small = GlyphsDataset(seed=1, num_alphabets=2, characters=(3, 3), drawings=4)
    assert len(small.classes) == 6 and len(small.load_class(5)) == 4


def test_class_index_and_check_index_errors(glyphs):
    with pytest.raises(DataError) as e:
        glyphs.class_index("alphabet03/charcter05")
    msg = one_line(e)
    assert "unknown class 'alphabet03/charcter05'" in msg
    assert "did you mean 'alphabet03/character05'" in msg
    with pytest.raises(DataError) as e:
        glyphs.check_index(len(glyphs.classes))
    assert f"valid indices are 0..{len(glyphs.classes) - 1}" in one_line(e)


# ---------------------------------------------------------------- omniglot


def test_omniglot_small1_structure(omniglot):
    assert omniglot.groups() == SMALL1_ALPHABETS
    assert len(omniglot.classes) == CLASSES
    assert all(c.num_images == 20 for c in omniglot.classes)
    assert omniglot.classes[0] == ClassRef("Balinese/character01", "Balinese", 20)
    greek = [c for c in omniglot.classes if c.group == "Greek"]
    assert [c.name for c in greek] == [f"Greek/character{i:02d}" for i in range(1, CHARS + 1)]
    i = omniglot.class_index("Greek/character05")
    images = omniglot.load_class(i)
    assert len(images) == 20
    for img in images:
        a = np.asarray(img)
        assert img.mode == "L" and img.size == (105, 105)
        assert set(np.unique(a)) <= {0, 255}  # 1-bit scans
        assert (a == 255).mean() > 0.8  # black strokes on white paper


def test_omniglot_to_tensor_range_and_invert(omniglot):
    images = omniglot.load_class(0)
    plain = to_tensor(images, 28, invert=False)
    inv = to_tensor(images, 28, invert=True)
    assert plain.shape == (20, 1, 28, 28) and plain.dtype == torch.float32
    assert plain.min() >= -1 and plain.max() <= 1
    assert torch.equal(inv, -plain)
    assert inv[:, :, 0, 0].eq(-1).all()  # paper -> -1 when inverted
    assert (inv > 0).float().mean() < 0.3  # strokes (bright when inverted) are a minority
    assert to_tensor(images, 64, invert=True).shape == (20, 1, 64, 64)


def test_omniglot_extracted_and_folder_of_zips(small1, tmp_path, omniglot):
    # a folder holding the zip (linked, not copied), read with and without split=
    (tmp_path / "zips").mkdir()
    os.symlink(small1, tmp_path / "zips" / small1.name)
    both = OmniglotDataset(root=tmp_path / "zips", split="images_background_small1")
    assert [c.name for c in both.classes] == [c.name for c in omniglot.classes]
    assert len(OmniglotDataset(root=tmp_path / "zips").classes) == CLASSES
    # an extracted split (only two alphabets, to stay fast)
    with zipfile.ZipFile(small1) as z:
        z.extractall(
            tmp_path / "x",
            [n for n in z.namelist() if "/Greek/" in n or "/Latin/" in n],
        )
    extracted = OmniglotDataset(root=tmp_path / "x" / "images_background_small1")
    assert extracted.groups() == ["Greek", "Latin"]
    assert len(extracted.classes) == 2 * CHARS
    i, j = extracted.class_index("Latin/character03"), omniglot.class_index("Latin/character03")
    a, b = extracted.load_class(i), omniglot.load_class(j)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    # the parent folder of the extracted split works as well
    assert len(OmniglotDataset(root=tmp_path / "x").classes) == 2 * CHARS


def test_omniglot_errors(tmp_path):
    with pytest.raises(DataError) as e:
        OmniglotDataset(root=tmp_path / "nowhere")
    msg = one_line(e)
    assert "does not exist" in msg and "images_background.zip" in msg
    assert "metagan data download omniglot --root DIR" in msg
    with pytest.raises(DataError, match="needs a root path"):
        OmniglotDataset()
    with pytest.raises(DataError) as e:
        OmniglotDataset(root=tmp_path)  # exists but holds nothing
    assert "no Omniglot data" in one_line(e)
    (tmp_path / "images_background.zip").write_bytes(b"not a zip at all")
    with pytest.raises(DataError) as e:
        OmniglotDataset(root=tmp_path)
    assert "incomplete download" in one_line(e)
    with pytest.raises(ConfigError) as e:
        OmniglotDataset(root=tmp_path, split="images_backgrund")
    assert "images_evaluation" in one_line(e)


# ---------------------------------------------------------------- images


def test_to_tensor_values_sizes_and_modes():
    white, black = Image.new("L", (50, 50), 255), Image.new("L", (50, 50), 0)
    x = to_tensor([white, black], 32, invert=False)
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert x[0].eq(1).all() and x[1].eq(-1).all()
    x = to_tensor([white, black], 32, invert=True)
    assert x[0].eq(-1).all() and x[1].eq(1).all()
    # transparent pixels are paper, colour is made grey, non-square images are padded
    rgba = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    rgba.putpixel((20, 10), (0, 0, 0, 255))
    y = to_tensor([rgba, Image.new("RGB", (10, 10), (255, 255, 255))], 28, invert=False)
    assert y.shape == (2, 1, 28, 28)
    assert y[0, 0, 0].eq(1).all() and y[0].min() < 1 and y[1].eq(1).all()
    with pytest.raises(ConfigError) as e:
        to_tensor([white], 48, invert=False)
    assert "valid sizes are 28, 32, 64" in one_line(e)


def test_to_pil_round_trip_and_save_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(3)]
    x = to_tensor(images, 28, invert=True)
    back = to_pil(x, invert=True)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, back))
    path = save_grid([x, x[:2]], tmp_path / "grid.png", invert=True, pad=2)
    grid = Image.open(path)
    assert grid.size == (2 + 3 * 30, 2 + 2 * 30)  # 3 columns, 2 rows of 28 px + 2 px pads
    g = np.asarray(grid)
    assert np.array_equal(g[2:30, 32:60], np.asarray(images[1]))
    assert (g[32:60, 62:90] == 128).all()  # the short row is left blank
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]  # no temp file left
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        to_pil(torch.zeros(2, 28, 28), invert=False)


def test_save_grid_sets_the_shots_apart_and_labels_rows(tmp_path):
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(3)]
    x = to_tensor(images, 28, invert=True)
    plain = np.asarray(Image.open(save_grid([x, x], tmp_path / "a.png", invert=True, pad=2)))
    path = save_grid([x, x], tmp_path / "b.png", invert=True, pad=2, split=1, labels=["a/1", "b/2"])
    g = np.asarray(Image.open(path))
    gap = 4 * 2 + 1
    left = g.shape[1] - plain.shape[1] - gap  # the label column
    assert left > 0 and g.shape[0] == plain.shape[0]
    # the shot column as before, the samples moved right by the gap
    assert np.array_equal(g[:, left : left + 32], plain[:, :32])
    assert np.array_equal(g[:, left + 32 + gap :], plain[:, 32:])
    assert (g[:, left + 32 + gap // 2 - 1] == 0).all()  # a black line between them
    assert (g[:, left + 32 : left + 32 + gap] != 128).sum() == g.shape[0]  # and only the line
    for i in range(2):  # each row's label is written on white beside it
        band = g[2 + i * 30 : 2 + i * 30 + 28, :left]
        assert (band == 255).mean() > 0.5 and (band < 128).any()
    with pytest.raises(ValueError, match="1 labels for 2 rows"):
        save_grid([x, x], tmp_path / "c.png", invert=True, labels=["a"])


def write_png(path: Path, size=(20, 20), value=255) -> Path:
    img = Image.new("L", size, value)
    img.putpixel((3, 3), 0)
    img.save(path)
    return path


def test_read_image_dir_ok_and_errors(tmp_path):
    for name in ["b.png", "a.jpg", "c.bmp"]:
        write_png(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    images = read_image_dir(tmp_path)
    assert len(images) == 3 and all(im.mode == "L" and im.size == (20, 20) for im in images)

    with pytest.raises(DataError) as e:
        read_image_dir(tmp_path / "missing")
    assert "does not exist" in one_line(e)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("")
    with pytest.raises(DataError) as e:
        read_image_dir(empty)
    assert ".png, .jpg, .jpeg, .bmp, .gif" in one_line(e)
    (tmp_path / "d.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError) as e:
        read_image_dir(tmp_path)
    assert "cannot read image" in one_line(e) and "d.png" in str(e.value)
    (tmp_path / "d.png").unlink()
    write_png(tmp_path / "e.png", size=(30, 20))  # images of other sizes are taken as they are
    assert [im.size for im in read_image_dir(tmp_path)] == [(20, 20)] * 3 + [(30, 20)]


# ---------------------------------------------------------------- folder dataset


def test_folder_dataset_flat_and_grouped(tmp_path):
    flat = tmp_path / "flat"
    for cls, n in [("dog", 3), ("cat", 5)]:
        (flat / cls).mkdir(parents=True)
        for j in range(n):
            write_png(flat / cls / f"{j}.png")
    ds = FolderDataset(root=flat)
    assert [(c.name, c.group, c.num_images) for c in ds.classes] == [
        ("cat", None, 5),
        ("dog", None, 3),
    ]
    assert ds.groups() == [] and len(ds.load_class(1)) == 3

    grouped = tmp_path / "grouped"
    for g, c in [("Greek", "alpha"), ("Greek", "beta"), ("Latin", "a")]:
        (grouped / g / c).mkdir(parents=True)
        write_png(grouped / g / c / "0.png")
    ds = FolderDataset(root=grouped)
    assert [c.name for c in ds.classes] == ["Greek/alpha", "Greek/beta", "Latin/a"]
    assert ds.groups() == ["Greek", "Latin"]


def test_folder_dataset_errors(tmp_path):
    with pytest.raises(DataError) as e:
        FolderDataset(root=tmp_path / "missing")
    assert "does not exist" in one_line(e)
    with pytest.raises(DataError, match="no class subfolders"):
        FolderDataset(root=tmp_path)
    (tmp_path / "a").mkdir()
    write_png(tmp_path / "a" / "0.png")
    (tmp_path / "a" / "1.png").write_text("this is not a png")
    with pytest.raises(DataError) as e:
        FolderDataset(root=tmp_path)
    assert "1.png" in one_line(e)
    (tmp_path / "a" / "1.png").unlink()
    write_png(tmp_path / "a" / "1.png", size=(25, 20))  # other sizes are resized, not refused
    assert FolderDataset(root=tmp_path).classes[0].num_images == 2
    (tmp_path / "a" / "1.png").unlink()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError) as e:
        FolderDataset(root=tmp_path)
    assert "no images in class folder" in one_line(e) and "/b" in str(e.value)


# ---------------------------------------------------------------- splits


def test_split_by_group_is_disjoint_whole_and_deterministic(omniglot):
    train, test = split_classes(omniglot, test_fraction=0.2, seed=0)
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == list(range(CLASSES))
    train_groups = {omniglot.classes[i].group for i in train}
    test_groups = {omniglot.classes[i].group for i in test}
    assert train_groups.isdisjoint(test_groups) and test_groups and train_groups
    assert len(test) >= 0.2 * CLASSES
    assert split_classes(omniglot, test_fraction=0.2, seed=0) == (train, test)
    splits = {tuple(split_classes(omniglot, seed=s)[1]) for s in range(6)}
    assert len(splits) > 1  # the seed matters


def test_split_named_groups_and_errors(omniglot):
    train, test = split_classes(omniglot, test_groups=["Greek", "Latin"])
    assert {omniglot.classes[i].group for i in test} == {"Greek", "Latin"}
    assert len(test) == 2 * CHARS and len(train) == CLASSES - 2 * CHARS
    assert split_classes(omniglot, test_groups="Greek")[1] == test[:CHARS]
    with pytest.raises(DataError) as e:
        split_classes(omniglot, test_groups=["Greeek"])
    msg = one_line(e)
    assert "unknown test group 'Greeek'" in msg and "did you mean 'Greek'" in msg
    with pytest.raises(DataError, match="leave at least one group"):
        split_classes(omniglot, test_groups=SMALL1_ALPHABETS)
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        split_classes(omniglot, test_fraction=1.0)


def test_test_fraction_zero_trains_on_every_class(omniglot):
    train, test = split_classes(omniglot, test_fraction=0.0)
    assert test == [] and train == list(range(len(omniglot.classes)))


def test_split_by_class_without_groups():
    ds = Counted([5] * 10)
    train, test = split_classes(ds, test_fraction=0.3, seed=1)
    assert len(test) == 3 and sorted(train + test) == list(range(10))
    assert split_classes(ds, test_fraction=0.3, seed=1) == (train, test)
    with pytest.raises(DataError, match="has no groups"):
        split_classes(ds, test_groups=["x"])


# ---------------------------------------------------------------- image cache and sampler


def test_image_cache_loads_each_class_once():
    ds = Counted([4, 6])
    cache = ImageCache(ds, image_size=28, invert=False)
    a = cache.get(1)
    assert a.shape == (6, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(cache.get(1), a) and ds.loads == [1]
    assert drawing_ids(a).tolist() == list(range(6))
    with pytest.raises(ConfigError):
        ImageCache(ds, image_size=100, invert=False)


def test_sampler_shapes_classes_and_disjoint_support_query():
    ds = Counted([8] * 6)
    sampler = TaskSampler(
        ImageCache(ds, image_size=28, invert=False), [0, 2, 3, 5], shots=3, queries=4, seed=0
    )
    for _ in range(5):
        batch = sampler.sample(4)
        assert batch.support.shape == (4, 3, 1, 28, 28)
        assert batch.query.shape == (4, 4, 1, 28, 28)
        assert batch.classes.dtype == torch.long
        assert sorted(batch.classes.tolist()) == [0, 2, 3, 5]  # no repeats when T <= classes
        ids = torch.cat([drawing_ids(batch.support), drawing_ids(batch.query)], 1)  # (T, 7)
        assert all(len(set(row)) == 7 for row in ids.tolist())  # support and query disjoint
    many = sampler.sample(10)  # more tasks than classes: each class 2 or 3 times
    counts = torch.bincount(many.classes, minlength=6)[[0, 2, 3, 5]]
    assert counts.sum() == 10 and counts.min() >= 2 and counts.max() <= 3
    assert sampler.sample(1).query.shape[1] == 4


def test_sampler_real_data_and_zero_queries(omniglot):
    cache = ImageCache(omniglot, image_size=28, invert=True)
    sampler = TaskSampler(cache, list(range(10)), shots=5, queries=0, seed=3)
    batch = sampler.sample(3)
    assert batch.support.shape == (3, 5, 1, 28, 28) and batch.query.shape == (3, 0, 1, 28, 28)
    assert batch.support.min() >= -1 and batch.support.max() <= 1
    assert set(batch.classes.tolist()) <= set(range(10))


def test_sampler_is_deterministic_for_a_seed():
    cache = ImageCache(Counted([20] * 12), image_size=28, invert=False)

    def draws(seed):
        s = TaskSampler(cache, list(range(12)), shots=2, queries=3, seed=seed)
        return [s.sample(5) for _ in range(3)]

    a, b, c = draws(7), draws(7), draws(8)
    for x, y in zip(a, b):
        assert torch.equal(x.support, y.support) and torch.equal(x.query, y.query)
        assert torch.equal(x.classes, y.classes)
    assert any(
        not torch.equal(x.classes, z.classes) or not torch.equal(x.support, z.support)
        for x, z in zip(a, c)
    )


def test_sampler_state_dict_resume_matches_uninterrupted_run(tmp_path):
    cache = ImageCache(Counted([20] * 12), image_size=28, invert=False)
    run = TaskSampler(cache, list(range(12)), shots=2, queries=3, seed=1)
    run.sample(5)
    torch.save({"sampler": run.state_dict()}, tmp_path / "ckpt.pt")
    expected = [run.sample(5) for _ in range(3)]

    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)["sampler"]
    resumed = TaskSampler(cache, list(range(12)), shots=2, queries=3, seed=999)
    resumed.load_state_dict(state)
    for want in expected:
        got = resumed.sample(5)
        assert torch.equal(got.classes, want.classes)
        assert torch.equal(got.support, want.support) and torch.equal(got.query, want.query)

    other = TaskSampler(cache, list(range(12)), shots=1, queries=3, seed=1)
    with pytest.raises(CheckpointError) as e:
        other.load_state_dict(state)
    assert "shots=2" in one_line(e) and "shots=1" in str(e.value)


def test_for_classes_is_deterministic_and_leaves_the_stream_alone():
    cache = ImageCache(Counted([20] * 6), image_size=28, invert=False)
    a = TaskSampler(cache, list(range(6)), shots=3, queries=2, seed=0)
    b = TaskSampler(cache, list(range(6)), shots=3, queries=2, seed=0)
    fixed = a.for_classes([4, 1, 4], seed=11)
    assert fixed.classes.tolist() == [4, 1, 4] and fixed.support.shape == (3, 3, 1, 28, 28)
    again = b.for_classes([4, 1, 4], seed=11)
    assert torch.equal(fixed.support, again.support) and torch.equal(fixed.query, again.query)
    assert not torch.equal(fixed.support, b.for_classes([4, 1, 4], seed=12).support)
    assert torch.equal(a.sample(4).support, b.sample(4).support)


class Marked(ClassDataset):
    """28 px images on black with ONE bright pixel at row 1, column 3; its value
    100 * class + 10 * drawing + 5 tells which class and drawing it is."""

    def __init__(self, classes: int, drawings: int):
        super().__init__(seed=0)
        self.classes = [ClassRef(f"m{i}", None, drawings) for i in range(classes)]

    def load_class(self, index):
        out = []
        for j in range(self.classes[index].num_images):
            im = Image.new("L", (28, 28), 0)
            im.putpixel((3, 1), 100 * index + 10 * j + 5)  # (x = column 3, y = row 1)
            out.append(im)
        return out


# where the marker of Marked lands (row, column), derived by hand for a 28 px image: a
# counter-clockwise quarter turn sends (r, c) to (27 - c, r); mirroring sends (r, c) to (r, 27 - c)
ROTATED = [(1, 3), (24, 1), (26, 24), (3, 26)]
MIRRORED = [(1, 24), (3, 1), (26, 3), (24, 26)]


def markers(x: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """(N, 1, 28, 28) images of Marked (invert=False) -> (class, drawing, row, column) each."""
    out = []
    for im in x[:, 0]:
        (r, c) = (im > -1).nonzero().tolist()[0]
        assert (im > -1).sum() == 1  # exactly one bright pixel: moved, not blurred or lost
        v = round((im[r, c].item() + 1) * 127.5)
        out.append((v // 100, (v % 100 - 5) // 10, r, c))
    return out


@pytest.mark.parametrize(
    "augment,positions", [("rot90", ROTATED), ("dihedral", ROTATED + MIRRORED)]
)
def test_task_augmentation_makes_each_class_rotated_and_mirrored_classes(augment, positions):
    cache = ImageCache(Marked(2, 6), image_size=28, invert=False)
    sampler = TaskSampler(cache, [0, 1], shots=2, queries=3, seed=0, augment=augment)
    n = 2 * len(positions)  # (class, variant) pairs
    for _ in range(3):
        batch = sampler.sample(n)  # T = the number of new classes: each drawn once
        seen = set()
        for t in range(n):
            m = markers(torch.cat([batch.support[t], batch.query[t]]))
            assert {(cls, r, c) for cls, _, r, c in m} == {m[0][:1] + m[0][2:]}  # one transform
            assert len({d for _, d, _, _ in m}) == 5  # 5 different drawings of the class
            assert m[0][0] == batch.classes[t].item()  # classes: the dataset's index
            seen.add((m[0][0], m[0][2], m[0][3]))
        assert seen == {(cls, r, c) for cls in (0, 1) for r, c in positions}
    # the meta-test side (for_classes) is never augmented
    fixed = sampler.for_classes([0, 1], seed=0)
    assert {(r, c) for *_, r, c in markers(fixed.support.flatten(0, 1))} == {(1, 3)}


def test_task_augmentation_none_draws_the_original_stream_and_resume_checks_it():
    cache = ImageCache(Counted([20] * 5), image_size=28, invert=False)
    a = TaskSampler(cache, list(range(5)), shots=2, queries=1, seed=4)
    b = TaskSampler(cache, list(range(5)), shots=2, queries=1, seed=4, augment="none")
    assert all(torch.equal(a.sample(3).support, b.sample(3).support) for _ in range(3))
    rot = TaskSampler(cache, list(range(5)), shots=2, queries=1, seed=4, augment="rot90")
    with pytest.raises(CheckpointError, match="variants=1 but this run has variants=4"):
        rot.load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="must be one of none, rot90, dihedral, got 'flip'"):
        TaskSampler(cache, [0], shots=1, queries=1, seed=0, augment="flip")
    with pytest.raises(ConfigError, match="data.task_augment must be one of none, rot90"):
        DataConfig(task_augment="rot45")


def test_sampler_validation_errors():
    ds = Counted([20, 20, 4])
    cache = ImageCache(ds, image_size=28, invert=False)
    with pytest.raises(ConfigError, match="shots must be an integer >= 1, got 0"):
        TaskSampler(cache, [0, 1], shots=0, queries=1, seed=0)
    with pytest.raises(ConfigError, match="queries must be an integer >= 0, got -1"):
        TaskSampler(cache, [0, 1], shots=1, queries=-1, seed=0)
    with pytest.raises(DataError) as e:
        TaskSampler(cache, [0, 1, 2], shots=3, queries=2, seed=0)
    msg = one_line(e)
    assert "class 'c2' has 4 images" in msg and "at least 5" in msg
    assert ds.loads == []  # raised from the class list, before loading anything
    with pytest.raises(DataError, match="valid indices are 0..2"):
        TaskSampler(cache, [0, 3], shots=1, queries=1, seed=0)


# ---------------------------------------------------------------- download


def serve(monkeypatch, files: dict[str, Path]) -> list[str]:
    """Patch the opener: a URL ending in NAME is served from files[NAME] via file://."""
    fetched: list[str] = []

    def opener(url, timeout=None):
        name = url.rsplit("/", 1)[-1]
        fetched.append(name)
        return urllib.request.urlopen(files[name].resolve().as_uri(), timeout=timeout)

    monkeypatch.setattr(download, "_urlopen", opener)
    return fetched


def test_download_verifies_md5_and_skips_present_files(small1, tmp_path, monkeypatch):
    # the shipped subset stands in for the official file: its md5 is the expected one here
    subset_md5 = hashlib.md5(small1.read_bytes()).hexdigest()
    monkeypatch.setitem(download.OMNIGLOT_MD5, "images_background_small1", subset_md5)
    fetched = serve(monkeypatch, {"images_background_small1.zip": small1})
    dest = tmp_path / "omniglot"
    paths = download.download_omniglot(dest, splits=("images_background_small1",))
    assert paths == [dest / "images_background_small1.zip"]
    assert hashlib.md5(paths[0].read_bytes()).hexdigest() == subset_md5
    assert sorted(p.name for p in dest.iterdir()) == ["images_background_small1.zip"]
    download.download_omniglot(dest, splits=("images_background_small1",))
    assert fetched == ["images_background_small1.zip"]  # the second call fetched nothing
    assert len(OmniglotDataset(root=dest).classes) == CLASSES


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"corrupted" * 1000)
    serve(monkeypatch, {"images_background_small1.zip": bad})
    dest = tmp_path / "out"
    with pytest.raises(DataError) as e:
        download.download_omniglot(dest, splits=("images_background_small1",))
    msg = one_line(e)
    assert f"expected md5 {SMALL1_MD5}" in msg
    assert f"got {hashlib.md5(bad.read_bytes()).hexdigest()}" in msg
    assert list(dest.iterdir()) == []


def test_download_small2_checked_by_listing(small1, tmp_path, monkeypatch):
    # small1's bytes under small2's name: a valid zip, but not of images_background_small2/
    serve(monkeypatch, {"images_background_small2.zip": small1})
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as e:
        download.download_omniglot(dest, splits=("images_background_small2",))
    assert "without any images_background_small2/" in one_line(e)
    assert list(dest.iterdir()) == []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("images_background_small2/A/character01/1_01.png", b"x")
    good = tmp_path / "small2.zip"
    good.write_bytes(buf.getvalue())
    serve(monkeypatch, {"images_background_small2.zip": good})
    out = download.download_omniglot(dest, splits=("images_background_small2",))
    assert out == [dest / "images_background_small2.zip"]
    assert out[0].read_bytes() == buf.getvalue()


def test_data_download_command_asks_the_dataset_plugin(small1, tmp_path, monkeypatch, capsys):
    from metagan.cli import main

    subset_md5 = hashlib.md5(small1.read_bytes()).hexdigest()
    monkeypatch.setitem(download.OMNIGLOT_MD5, "images_background_small1", subset_md5)
    serve(monkeypatch, {"images_background_small1.zip": small1})
    dest = tmp_path / "data"
    argv = ["data", "download", "omniglot", "--root", str(dest), "--splits",
            "images_background_small1"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == [str(dest / "images_background_small1.zip")]
    assert OmniglotDataset(root=dest).classes == OmniglotDataset(root=small1).classes
    # a dataset without files to fetch says so, naming those that have some
    assert main(["data", "download", "glyphs", "--root", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "dataset 'glyphs' has nothing to download; datasets that do: omniglot" in err
    assert not (tmp_path / "g").exists()


def test_download_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as e:
        download.download_omniglot(tmp_path, splits=("images_backgrund",))
    assert "valid splits: images_background, images_evaluation" in one_line(e)

    def offline(url, timeout=None):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(download, "_urlopen", offline)
    with pytest.raises(DataError) as e:
        download.download_omniglot(tmp_path, splits=("images_evaluation",))
    assert "cannot download https://github.com/brendenlake/omniglot" in one_line(e)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- plugin registration


def test_builtin_datasets_plugin_registers_all_three():
    import metagan_builtin.datasets as plugin
    from metagan import plugins

    regs = plugins.load(extra=[("datasets", plugin)], entry_points=False)
    assert regs.datasets.names() == ["folder", "glyphs", "omniglot"]
    assert regs.datasets.get("glyphs") is GlyphsDataset
    assert all(e.description for e in regs.datasets.entries())


# ---------------------------------------------------------------- conformance check


@pytest.mark.parametrize("name", ["glyphs", "omniglot", "folder"])
def test_builtin_datasets_pass_the_plugin_conformance_check(registries, name, small1, tmp_path):
    from metagan.testing import check_dataset

    root = {"glyphs": None, "omniglot": small1, "folder": tmp_path}[name]
    if name == "folder":
        for c in ("cat", "dog"):
            (tmp_path / c).mkdir()
            for i in range(3):
                write_png(tmp_path / c / f"{i}.png", value=200 + 10 * i)
    check_dataset(registries.datasets.get(name), root=root)


def test_the_dataset_conformance_check_catches_mistakes():
    from metagan.testing import check_dataset

    def dataset(refs, count=None):
        class Made(ClassDataset):
            def __init__(self, *, root=None, seed=0):
                super().__init__(root=root, seed=seed)
                self.classes = list(refs)

            def load_class(self, index):
                n = self.classes[index].num_images if count is None else count
                return [Image.new("L", (20, 20), 255) for _ in range(n)]

        return Made

    check_dataset(dataset([ClassRef("a/x", "a", 3), ClassRef("y", None, 2)]))  # a good one
    with pytest.raises(AssertionError, match="lists 3 images but load_class gave 2"):
        check_dataset(dataset([ClassRef("a/x", "a", 3)], count=2))
    with pytest.raises(AssertionError, match=r"name it '<group>/<class>'"):
        check_dataset(dataset([ClassRef("x", "a", 3)]))
    with pytest.raises(AssertionError, match="unique"):
        check_dataset(dataset([ClassRef("a/x", "a", 3), ClassRef("a/x", "a", 3)]))
    with pytest.raises(AssertionError, match="K \\+ Q need >= 2"):
        check_dataset(dataset([ClassRef("a/x", "a", 1)]))
