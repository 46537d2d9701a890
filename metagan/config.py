"""Run configuration: dataclasses, loaded from TOML (data, never executed) plus overrides.

A config file has one table per section::

    [data]
    dataset = "glyphs"
    shots = 5

    [meta]
    algorithm = "reptile"

and ``key=value`` overrides use dotted keys (``inner.steps=3``), values parsed as TOML
(``meta.betas=[0.5, 0.99]``, ``data.root="/data"``; a bare word is taken as a string).
Unknown sections or keys, and values of the wrong type, raise a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metagan.algorithm import MetaConfig
from metagan.data.tasks import TASK_AUGMENTS
from metagan.errors import SEED_MAX, ConfigError, check_range
from metagan.inner import InnerConfig
from metagan.models import IMAGE_SIZES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Where tasks come from."""

    dataset: str = "glyphs"
    root: str = ""  # path for datasets that read files (omniglot, folder); "" = none
    image_size: int = 28  # 28, 32, 64 or 128
    # 1 (grayscale) or 3 (RGB) converts the images; 0: the dataset's own (the folder dataset
    # reads it from the files: 3 if any is colour). The run's checkpoint records the number.
    channels: int = 0
    # strokes bright on a dark background, the usual GAN convention; for 1-channel data only:
    # colour images are never inverted (a run with 3 channels records invert = false)
    invert: bool = True
    shots: int = 5  # K support images per task
    queries: int = 5  # Q query images per task (outer loss)
    # share of groups (alphabets) held out for meta-test; 0: none (every class trains, for a
    # generator to ship rather than to evaluate)
    test_fraction: float = 0.2
    test_groups: list[str] = field(default_factory=list)  # explicit meta-test groups instead
    seed: int = 0  # dataset generation (glyphs) and the train/test split
    # meta-train task augmentation: "rot90" makes each class 4 (rotated by 0/90/180/270
    # degrees), "dihedral" 8 (also mirrored); meta-test classes are never augmented
    task_augment: str = "none"

    def __post_init__(self):
        if self.image_size not in IMAGE_SIZES:
            raise ConfigError(
                f"data.image_size must be one of {', '.join(map(str, IMAGE_SIZES))}, got {self.image_size}"
            )
        if self.channels not in (0, 1, 3):
            raise ConfigError(
                f"data.channels must be 0 (the dataset's), 1 (grayscale) or 3 (RGB), got {self.channels}"
            )
        if self.shots < 1:
            raise ConfigError(f"data.shots must be a positive integer, got {self.shots}")
        if self.queries < 0:
            raise ConfigError(f"data.queries must be >= 0, got {self.queries}")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError(
                f"data.test_fraction must be in [0, 1) (0: no meta-test classes), got {self.test_fraction}"
            )
        check_range("data.shots", self.shots, 1, 10_000, what="an integer")
        check_range("data.queries", self.queries, 0, 10_000, what="an integer")
        check_range("data.seed", self.seed, 0, SEED_MAX, what="an integer")
        if self.task_augment not in TASK_AUGMENTS:
            raise ConfigError(
                f"data.task_augment must be one of {', '.join(TASK_AUGMENTS)}, "
                f"got {self.task_augment!r}"
            )


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which networks and loss."""

    arch: str = "dcgan"
    z_dim: int = 64
    width: int = 32
    loss: str = "nonsaturating"

    def __post_init__(self):
        for key in ("z_dim", "width"):
            if getattr(self, key) <= 0:
                raise ConfigError(
                    f"model.{key} must be a positive integer, got {getattr(self, key)}"
                )
            check_range(f"model.{key}", getattr(self, key), 1, 65_536, what="an integer")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Bookkeeping: output, seed, logging."""

    out: str = "runs/default"
    seed: int = 0  # tasks and noise
    device: str = "cpu"
    engine: str = "batched"  # "batched" | "sequential" (the reference per-task loop)
    # Replay each meta-iteration's meta-gradients from a CUDA graph (metagan.graphs): for GPUs,
    # where small models are bound by kernel launches. Needs run.device = cuda, the batched engine.
    cuda_graph: bool = False
    log_every: int = 10
    sample_every: int = 100  # sample grid of adapted meta-test classes; 0 = only at the end
    checkpoint_every: int = 100
    sample_classes: int = 6  # meta-test classes shown in each grid
    sample_num: int = 8  # samples per class in each grid
    progress: bool = True
    # Also log to run.out/tensorboard (needs `pip install 'metagan[tensorboard]'`; without the
    # package the run goes on and its log says no event files are written).
    tensorboard: bool = False

    def __post_init__(self):
        if not self.out.strip():  # "" would be the current folder, never meant
            raise ConfigError("run.out is empty; give the run's output folder, e.g. --out runs/r1")
        if self.engine not in ("batched", "sequential"):
            raise ConfigError(f"run.engine must be 'batched' or 'sequential', got {self.engine!r}")
        if self.cuda_graph and (not self.device.startswith("cuda") or self.engine != "batched"):
            raise ConfigError(
                "run.cuda_graph replays the batched engine on a GPU; it needs run.device = "
                f"cuda and run.engine = batched (got device {self.device!r}, engine {self.engine!r})"
            )
        for key in ("log_every", "checkpoint_every", "sample_classes", "sample_num"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"run.{key} must be a positive integer, got {getattr(self, key)}")
        if self.sample_every < 0:
            raise ConfigError(f"run.sample_every must be >= 0, got {self.sample_every}")
        check_range("run.seed", self.seed, 0, SEED_MAX, what="an integer")
        for key in ("log_every", "checkpoint_every", "sample_every"):
            check_range(f"run.{key}", getattr(self, key), 0, 10**9, what="an integer")
        for key in ("sample_classes", "sample_num"):
            check_range(f"run.{key}", getattr(self, key), 1, 1_000, what="an integer")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "inner": InnerConfig,
    "meta": MetaConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in SECTIONS:
            sec = dataclasses.asdict(getattr(self, name))
            out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in sec.items()}
        return out

    def to_toml(self) -> str:
        lines = []
        for name, sec in self.to_dict().items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in sec.items()]
            lines.append("")
        return "\n".join(lines)


def load(
    path: str | Path | None = None, overrides: list[str] = (), base: dict | None = None
) -> Config:
    """Defaults ← ``base`` (e.g. a checkpoint's config) ← TOML file ← ``key=value`` overrides."""
    for section, values in (base or {}).items():
        if not isinstance(values, dict):
            raise ConfigError(
                f"config section {section!r} must be a table, got {type(values).__name__}"
            )
    raw: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (base or {}).items()}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"config file {path} is not UTF-8 text (byte {exc.start}); TOML files must be UTF-8"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(_TOO_DEEP.format(f"config file {path}")) from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(
                    f"config file {path}: top-level key {section!r} must be a [section]; "
                    f"valid sections: {', '.join(SECTIONS)}"
                )
            _check_section(section)
            raw.setdefault(section, {}).update(values)
    for item in overrides:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})[key] = value
    return from_dict(raw)


def from_dict(raw: dict[str, dict[str, Any]]) -> Config:
    sections = {}
    for section, values in raw.items():
        cls = _check_section(section)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f"; did you mean {section}.{close[0]}?" if close else ""
                raise ConfigError(
                    f"unknown config key {section}.{key}{hint} (valid keys in [{section}]: {', '.join(fields)})"
                )
            kwargs[key] = _coerce(f"{section}.{key}", value, fields[key].type)
        sections[section] = cls(**kwargs)
    return Config(**sections)


def parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. inner.steps=3")
    key, _, value = item.partition("=")
    if key.count(".") != 1:
        raise ConfigError(
            f"override key {key!r} must be section.key, e.g. meta.algorithm; sections: {', '.join(SECTIONS)}"
        )
    section, name = key.strip().split(".")
    _check_section(section)
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value  # a bare word: a string
    except RecursionError:
        raise ConfigError(_TOO_DEEP.format(f"override {key}")) from None
    return section, name, parsed


# a config is sections of numbers, strings and flat lists; tomllib recurses once per level
_TOO_DEEP = "{} nests arrays or tables too deeply to read (a config is [sections] of plain values)"


def _check_section(section: str) -> type:
    if section not in SECTIONS:
        close = difflib.get_close_matches(section, list(SECTIONS), n=1)
        hint = f"; did you mean [{close[0]}]?" if close else ""
        raise ConfigError(
            f"unknown config section [{section}]{hint} (valid: {', '.join(SECTIONS)})"
        )
    return SECTIONS[section]


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    tp = _resolve(annotation)
    origin = typing.get_origin(tp)
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif origin in (list, tuple):
        ok = isinstance(value, (list, tuple))
        if ok:
            (inner, *_) = typing.get_args(tp) or (Any,)
            value = [_coerce(name, v, inner) for v in value]
            value = tuple(value) if origin is tuple else value
    else:
        ok = True
    if not ok:
        want = getattr(tp, "__name__", str(tp))
        raise ConfigError(
            f"config key {name} must be {want}, got {value!r} ({type(value).__name__})"
        )
    return value


def _resolve(annotation: Any) -> Any:
    if isinstance(annotation, str):
        annotation = eval_type(annotation)
    if isinstance(annotation, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def eval_type(text: str) -> Any:
    """Resolve the few annotation strings our dataclasses use (no eval of arbitrary text)."""
    text = text.strip()
    if text in _TYPES:
        return _TYPES[text]
    for prefix, origin in (("list[", list), ("tuple[", tuple)):
        if text.startswith(prefix) and text.endswith("]"):
            inner = text[len(prefix) : -1].split(",")[0]
            return origin[eval_type(inner)]
    return Any


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)
