import pytest

from metagan import config
from metagan.errors import ConfigError


def test_toml_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[meta]\nalgorithm = "reptile"\ntasks = 4\n[inner]\nsteps = 2\n')
    cfg = config.load(p, ["inner.lr_g=0.1", "meta.betas=[0.0, 0.9]", "data.dataset=omniglot"])
    assert cfg.meta.algorithm == "reptile" and cfg.meta.tasks == 4
    assert cfg.inner.steps == 2 and cfg.inner.lr_g == 0.1
    assert cfg.meta.betas == (0.0, 0.9) and cfg.data.dataset == "omniglot"
    # round trip through TOML
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml())
    assert config.load(again) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("inner.stpes=3", "unknown config key inner.stpes; did you mean inner.steps?"),
        ("innr.steps=3", "unknown config section [innr]; did you mean [inner]?"),
        ("inner.steps=three", "config key inner.steps must be int, got 'three'"),
        ("inner.steps=-1", "inner.steps must be >= 0"),
        ("inner.lr_g=0", "inner.lr_g must be a positive learning rate"),
        ("meta.tasks=0", "meta.tasks must be a positive integer"),
        ("data.shots=0", "data.shots must be a positive integer"),
        ("data.image_size=30", "data.image_size must be one of 28, 32, 64"),
        ("inner.method=rmsprop", "inner.method must be one of sgd, momentum, adam"),
        ("steps=3", "must be section.key"),
    ],
)
def test_bad_config_is_one_line(override, message):
    with pytest.raises(ConfigError) as exc:
        config.load(None, [override])
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_config_file_is_data_not_code(tmp_path):
    p = tmp_path / "evil.toml"
    p.write_text('[meta]\nalgorithm = __import__("os").system("echo hi")\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(p)
