"""A third-party plugin distribution, pip-installed, shows up and trains by name; a broken
one is reported clearly without taking the others down."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    for name in (
        "metagan-halfstep", "metagan-broken", "metagan-anil", "metagan-clash", "metagan-hooklogger"
    ):  # fmt: skip
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


TINY = ["--iterations", "2", "meta.tasks=2", "inner.steps=1", "model.width=8", "model.z_dim=16",
        "run.progress=false", "run.sample_classes=2", "run.sample_every=0"]  # fmt: skip


def test_anil_plugin_adapts_only_the_last_layers(site, tmp_path):
    """A plugin written from docs/plugins.md alone (tests/plugins/metagan-anil) whose inner
    loop adapts only the last layer of G and D: it trains by name, passes the conformance
    check, and adapting it changes the head's parameters and nothing else."""
    import metagan
    from metagan import plugins
    from metagan.testing import check_algorithm

    path = str(site / "metagan-anil")
    r = run(["plugins"], path, tmp_path)
    assert r.returncode == 0 and "anil" in r.stdout and "metagan-anil==0.1.0" in r.stdout
    r = run(
        ["train", "--algorithm", "anil", "--arch", "mlp", "--out", "run", *TINY], path, tmp_path
    )
    assert r.returncode == 0, r.stderr
    sys.path.insert(0, path)
    try:
        import metagan_anil
    finally:
        sys.path.remove(path)
    check_algorithm(metagan_anil.ANIL)
    regs = plugins.load(extra=[("anil", metagan_anil)])
    g = metagan.load(tmp_path / "run" / "checkpoint.pt", registries=regs)
    shots = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    moved = (g.adapt(shots, steps=2).theta_g[0] - g.params["g"].detach()).abs() > 0
    head = metagan_anil.head_mask(g.session.engine.G.spec).bool()
    # expected from the layout alone: the mlp generator's last Linear layer
    segments = g.session.engine.G.spec.segments()
    name, offset, numel = segments[-1]
    w_name, w_offset, w_numel = segments[-2]
    assert name.endswith(".bias") and w_name.endswith(".weight")
    assert head.sum() == numel + w_numel and head[w_offset : offset + numel].all()
    assert moved.any() and not moved[~head].any()


def test_a_name_two_plugins_register_does_not_take_commands_down(site, tmp_path):
    path = str(site / "metagan-clash")
    r = run(["plugins"], path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "algorithms:reptile" in r.stdout and "clash:reptile" in r.stdout
    assert "metagan-clash==2.0.0" in r.stdout
    r = run(["train", "--algorithm", "fomaml", "--out", "a", *TINY], path, tmp_path)
    assert r.returncode == 0, r.stderr  # other names work
    r = run(["train", "--algorithm", "reptile", "--out", "b", *TINY], path, tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "algorithms:reptile or clash:reptile" in r.stderr and not (tmp_path / "b").exists()
    r = run(["train", "--algorithm", "algorithms:reptile", "--out", "c", *TINY], path, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c" / "checkpoint.pt").is_file()


def test_a_logger_written_from_the_docs_receives_every_hook_of_a_run(site, tmp_path):
    """tests/plugins/metagan-hooklogger is docs/plugins.md's lifecycle example verbatim;
    pip-installed, it is called at every hook of a `metagan train`, at the steps the config
    says, and what it adds to the rows reaches metrics.jsonl."""
    from metagan import plugins

    src = (HERE / "plugins" / "metagan-hooklogger" / "hooklogger" / "__init__.py").read_text()
    assert src.split("\n", 2)[2].lstrip("\n") in (REPO / "docs" / "plugins.md").read_text()
    path = str(site / "metagan-hooklogger")
    hooks = [h.removeprefix("metagan_") for h in plugins.LIFECYCLE_HOOKS]
    sys.path.insert(0, path)  # found through its entry point, as `metagan plugins` finds it
    try:
        info = next(p for p in plugins.load().plugins if p.name == "hooklogger")
    finally:
        sys.path.remove(path)
    assert (info.origin, info.error) == ("metagan-hooklogger==0.1.0", None)
    assert sorted(h.removeprefix("metagan_") for h in info.hooks) == sorted(hooks)
    r = run(["train", "--algorithm", "fomaml", "--arch", "mlp", "--iterations", "3", "--out", "run",
             "meta.tasks=2", "inner.steps=1", "model.width=8", "model.z_dim=16", "run.progress=false",
             "run.sample_classes=2", "run.sample_num=2", "run.sample_every=2", "run.log_every=2",
             "run.checkpoint_every=2"], path, tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run"
    assert "hooklogger: writing run/hooklogger.jsonl" in r.stdout  # run.out as given
    events = [json.loads(x) for x in (out / "hooklogger.jsonl").read_text().splitlines()]
    assert {e["hook"] for e in events} == set(hooks)
    assert (events[0]["hook"], events[0]["step"]) == ("run_start", 0)
    assert (events[-1]["hook"], events[-1]["step"], events[-1]["error"]) == ("run_end", 3, None)

    def steps(hook):
        return [e["step"] for e in events if e["hook"] == hook]

    # expected from the config: 3 steps, log/checkpoint/sample every 2 and at the end
    assert steps("meta_step_end") == [1, 2, 3]
    assert steps("collect_metrics") == steps("log_metrics") == [2, 3]
    assert steps("checkpoint_saved") == [2, 3]
    assert steps("make_sample_grid") == steps("sample_grid") == [2, 3]
    grids = [e["path"] for e in events if e["hook"] == "sample_grid"]
    assert grids == [f"run/samples/step_{k:06d}.png" for k in (2, 3)]
    assert all((tmp_path / g).is_file() for g in grids)
    rows = [e["row"] for e in events if e["hook"] == "log_metrics"]
    assert rows == [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(row["hooklogger_tasks"] == 2 and "memorisation" in row for row in rows)
