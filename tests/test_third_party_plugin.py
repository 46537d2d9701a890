"""A third-party plugin distribution, pip-installed, shows up and trains by name; a broken
one is reported clearly without taking the others down."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli_env

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    for name in ("metagan-halfstep", "metagan-broken"):
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--no-compile", "--target", str(target / name), str(HERE / "plugins" / name)],
            check=True,
        )  # fmt: skip
    return target


def run(args, pythonpath, cwd):
    return subprocess.run(
        [sys.executable, "-m", "metagan", *args], capture_output=True, text=True, cwd=cwd,
        env=cli_env(PYTHONPATH=pythonpath),
    )  # fmt: skip


def test_installed_plugin_is_listed_and_trains(site, tmp_path):
    path = str(site / "metagan-halfstep")
    r = run(["plugins"], path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "halfstep" in r.stdout and "metagan-halfstep==0.3.1" in r.stdout
    assert "halfreptile" in r.stdout and "tinymlp" in r.stdout
    r = run(["train", "--algorithm", "halfreptile", "--arch", "tinymlp", "--iterations", "2", "--out", "run",
             "meta.tasks=2", "inner.steps=1", "run.progress=false", "run.sample_classes=2"], path, tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "halfstep-0.3.1" in r.stdout  # the log header names the plugin
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_broken_plugin_is_reported_and_others_work(site, tmp_path):
    path = f"{site / 'metagan-broken'}:{site / 'metagan-halfstep'}"
    r = run(["plugins"], path, tmp_path)
    assert r.returncode == 0
    assert (
        'Error loading plugin "broken" from metagan-broken==1.0.0: ModuleNotFoundError: '
        "No module named 'metagan_dependency_that_does_not_exist'" in r.stderr
    )
    assert "--disable-plugin broken" in r.stderr
    assert "halfreptile" in r.stdout and "reptile" in r.stdout
    r = run(["--disable-plugin", "broken", "plugins"], path, tmp_path)
    assert r.returncode == 0 and "Error loading" not in r.stderr
    # asking for the broken plugin's names fails with the usual one-line error
    r = run(["train", "--algorithm", "brokenalgo", "--out", "x"], path, tmp_path)
    assert r.returncode == 2 and "unknown algorithm 'brokenalgo'" in r.stderr
    assert not (tmp_path / "x").exists()
