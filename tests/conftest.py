import os
from pathlib import Path

import pytest
import torch

from metagan import plugins

REPO = Path(__file__).resolve().parents[1]
# A subset of the official Omniglot images_background_small1.zip, shipped with the tests so
# that any clone runs them: all 5 alphabets, the first 6 characters of each, all 20 drawings
# (tests/data/omniglot/README.md says how it was made; the data's MIT licence is beside it).
SMALL1 = REPO / "tests" / "data" / "omniglot" / "images_background_small1.zip"


@pytest.fixture(scope="session")
def registries():
    """The installed plugins (built-ins through the entry-point group, as users get them)."""
    return plugins.load()


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _no_disabled_plugins(monkeypatch):
    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop(plugins.DISABLE_ENV, None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
