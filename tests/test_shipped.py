"""The checkpoints shipped inside the package (metagan/pretrained/): each loads by name right
after install, with its model card, adapts to five drawings in seconds and draws new ones."""

import zipfile

import pytest
import torch
from conftest import SMALL1
from PIL import Image

import metagan
from metagan import pretrained
from metagan.cli import main

SHIPPED = ["glyphs-dagan", "omniglot-dagan"]


def test_the_shipped_checkpoints_are_installed_with_their_model_cards():
    assert set(SHIPPED) <= set(pretrained.available())
    for name in SHIPPED:
        card = pretrained.model_card(name)
        for heading in ("## Data", "## Config", "## Hardware and time", "## How good it is"):
            assert heading in card, f"{name}.md lacks {heading}"
        assert pretrained.path(name).stat().st_size < 4_000_000  # a few MB at most
        ckpt = torch.load(pretrained.path(name), weights_only=True)
        assert all(t.isfinite().all() for t in ckpt["params"].values())


def _five_drawings(tmp_path, character="Latin/character01"):
    """Five drawings of one Omniglot character (from the subset the tests ship)."""
    out = tmp_path / "five"
    out.mkdir()
    with zipfile.ZipFile(SMALL1) as z:
        names = sorted(n for n in z.namelist() if f"/{character}/" in n and n.endswith(".png"))
        for n in names[:5]:
            (out / n.rsplit("/", 1)[1]).write_bytes(z.read(n))
    assert len(list(out.iterdir())) == 5
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_checkpoint_adapts_by_name_and_draws_new_drawings(tmp_path, name):
    g = metagan.load(name)
    shots = _five_drawings(tmp_path)
    a = g.adapt(sorted(shots.iterdir()), steps=5, seed=0)
    x = a.sample(16)
    C, H, W = g.image_shape
    assert x.shape == (16, C, H, W) and x.isfinite().all()
    assert x.min() >= -1 and x.max() <= 1
    # new drawings, not copies: every sample differs from every shot by more than rounding
    ref = g.images(sorted(shots.iterdir()))  # (5, C, H, W), read the way adapt reads them
    d = (x[:, None] - ref[None]).abs().flatten(2).mean(-1)  # (16, 5)
    assert (d.min(1).values > 0.01).all()
    # and not all the same drawing
    assert (x[1:] - x[:1]).abs().flatten(1).mean(1).max() > 0.01


def test_adapt_by_name_on_the_command_line(tmp_path):
    shots = _five_drawings(tmp_path)
    out = tmp_path / "out"
    assert main(["adapt", "--checkpoint", "omniglot-dagan", "--images", str(shots),
                 "--num", "8", "--out", str(out)]) == 0  # fmt: skip
    grid = Image.open(out / "grid.png")
    assert grid.width > grid.height > 0
