import os
from pathlib import Path

import pytest
import torch

from metagan import plugins

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SMALL1 = SHARED / "omniglot" / "images_background_small1.zip"


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
