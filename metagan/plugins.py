"""Plugin discovery and loading on pluggy.

Plugins are found through the ``metagan`` entry-point group: metagan's own built-in plugins
(``plugins/metagan_builtin``) are declared there by the root pyproject exactly as a third-party
package would declare its own. Each entry point is loaded inside a guard: a plugin that fails to
import, that implements a hook that does not exist (a misspelling), or that raises while
registering is reported with its name, distribution and cause and left out; the other plugins
keep working. Plugins are disabled by name with ``--disable-plugin NAME`` or
``METAGAN_DISABLE_PLUGINS=NAME,NAME``.

metagan's own run loggers (``metagan/loggers/``: the progress bar, ``metrics.jsonl``, the
memorisation score, TensorBoard, sample grids) are plugins on the lifecycle hooks, listed in
:data:`DEFAULT_PLUGINS` and loaded through the same guarded walk as the entry points (pytest's
``default_plugins``), so ``metagan plugins`` lists them and ``--disable-plugin`` turns them off.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from metagan import hookspecs
from metagan._version import __version__
from metagan.errors import MetaganError, PluginError, cause
from metagan.registry import PluginOrigin, Registry

hookimpl = pluggy.HookimplMarker("metagan")

ENTRY_POINT_GROUP = "metagan"
DISABLE_ENV = "METAGAN_DISABLE_PLUGINS"
# Built-in plugins that every command needs; disabling them is refused (pytest's essential_plugins).
ESSENTIAL_PLUGINS = frozenset({"losses"})

# hook name -> the registry attribute of Registries it fills
HOOKS = {
    "metagan_register_datasets": "datasets",
    "metagan_register_architectures": "architectures",
    "metagan_register_algorithms": "algorithms",
    "metagan_register_losses": "losses",
}
# the run's lifecycle hooks (hookspecs.py), called by the Trainer through Registries.call
LIFECYCLE_HOOKS = (
    "metagan_run_start",
    "metagan_meta_step_end",
    "metagan_collect_metrics",
    "metagan_log_metrics",
    "metagan_checkpoint_saved",
    "metagan_make_sample_grid",
    "metagan_sample_grid",
    "metagan_run_end",
)
ALL_HOOKS = (*HOOKS, *LIFECYCLE_HOOKS)
# metagan's own lifecycle plugins, by name: loaded like entry points (a module path each)
DEFAULT_PLUGINS = (
    ("progress", "metagan.loggers.progress"),
    ("metrics", "metagan.loggers.metrics"),
    ("memorisation", "metagan.loggers.memorisation"),
    ("tensorboard", "metagan.loggers.tensorboard"),
    ("grids", "metagan.loggers.grids"),
)


@dataclass
class PluginInfo:
    """A discovered plugin: loaded (``error is None``) or not."""

    name: str
    dist: str | None
    version: str | None
    module: str
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def origin(self) -> str:
        if self.dist is None:
            return "not from an installed distribution"
        return f"{self.dist}=={self.version}"


@dataclass
class Registries:
    """Everything the loaded plugins registered, plus what failed to load."""

    datasets: Registry
    architectures: Registry
    algorithms: Registry
    losses: Registry
    plugins: list[PluginInfo]
    disabled: list[str]
    pm: pluggy.PluginManager | None = None  # the lifecycle hooks are called through it

    def call(self, hook: str, **kwargs) -> Any:
        """Call lifecycle hook ``hook`` with keyword arguments; an exception raised inside a
        plugin becomes a one-line :class:`PluginError` that names the plugin."""
        if self.pm is None:
            return None
        caller = getattr(self.pm.hook, hook)
        try:
            return caller(**kwargs)
        except MetaganError:
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's fault, named
            who = _culprit(caller, exc)
            raise PluginError(f"plugin {who!r} raised in {hook}: {cause(exc)}") from exc

    @property
    def failed(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error is not None]

    def kinds(self) -> list[Registry]:
        return [self.datasets, self.architectures, self.algorithms, self.losses]


def disabled_from_env() -> list[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return [n.strip() for n in raw.split(",") if n.strip()]


def load(
    *,
    disabled: Iterable[str] = (),
    extra: Iterable[tuple[str, Any]] = (),
    entry_points: bool = True,
    defaults: bool = True,
) -> Registries:
    """Discover, load and run every plugin; return the filled registries.

    :param disabled: plugin names to skip (merged with ``$METAGAN_DISABLE_PLUGINS``).
    :param extra: ``(name, plugin_object)`` pairs registered directly (tests, notebooks).
    :param entry_points: read the ``metagan`` entry-point group (off in isolated tests).
    :param defaults: load metagan's own lifecycle plugins (:data:`DEFAULT_PLUGINS`).
    """
    disabled = sorted(set(disabled) | set(disabled_from_env()))
    refused = sorted(set(disabled) & ESSENTIAL_PLUGINS)
    if refused:
        raise PluginError(
            f"plugin {refused[0]!r} is essential and cannot be disabled; "
            f"essential plugins: {', '.join(sorted(ESSENTIAL_PLUGINS))}"
        )
    pm = pluggy.PluginManager("metagan")
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    candidates: list[tuple[PluginInfo, Any]] = []

    found_names: set[str] = set()
    found = _default_entry_points() if defaults else []
    found += _entry_points() if entry_points else []
    if found:
        for ep in found:
            dist = getattr(ep, "dist", None)
            builtin = ep.group == _DEFAULT_GROUP
            info = PluginInfo(
                name=ep.name,
                dist="metagan" if builtin else dist.metadata["Name"] if dist is not None else None,
                version=__version__ if builtin else dist.version if dist is not None else None,
                module=ep.value,
            )
            found_names.add(ep.name)
            if ep.name in disabled:
                continue
            infos.append(info)
            try:
                candidates.append((info, ep.load()))
            except Exception as exc:  # noqa: BLE001 - any import failure is reported, not fatal
                info.error = _cause(exc)
    for name, obj in extra:
        found_names.add(name)
        if name in disabled:
            continue
        info = PluginInfo(
            name=name, dist=None, version=None, module=getattr(obj, "__name__", repr(obj))
        )
        infos.append(info)
        candidates.append((info, obj))

    unknown = [n for n in disabled if n not in found_names]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(found_names), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise PluginError(
            f"cannot disable unknown plugin {unknown[0]!r}{hint} "
            f"(installed: {', '.join(sorted(found_names)) or 'none'})"
        )

    for info, obj in candidates:
        try:
            pm.register(obj, name=info.name)
        except Exception as exc:  # noqa: BLE001 - e.g. a hookimpl with unknown arguments
            info.error = _cause(exc)
            continue
        bad = _unknown_hooks(pm, obj)
        if bad:
            pm.unregister(obj)
            close = difflib.get_close_matches(bad, list(ALL_HOOKS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            info.error = (
                f"implements unknown hook {bad!r}{hint}; valid hooks: {', '.join(ALL_HOOKS)}"
            )
            continue
        info.hooks = sorted(
            h for h in ALL_HOOKS if hasattr(obj, h) and pm.parse_hookimpl_opts(obj, h) is not None
        )
    pm.check_pending()  # everything left must match a spec

    regs = Registries(
        datasets=Registry("dataset"),
        architectures=Registry("architecture", flag="--arch"),
        algorithms=Registry("algorithm"),
        losses=Registry("loss"),
        plugins=infos,
        disabled=disabled,
        pm=pm,
    )
    by_name = {i.name: i for i in infos}
    for hook_name, attr in HOOKS.items():
        registry: Registry = getattr(regs, attr)
        for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
            info = by_name[impl.plugin_name]
            if info.error is not None:
                continue
            registry._origin = PluginOrigin(info.name, info.dist, info.version)
            try:
                impl.function(registry=registry)
            except Exception as exc:  # noqa: BLE001 - an invalid name is this plugin's fault too
                info.error = f"raised in {hook_name}: {_cause(exc)}"
                for reg in regs.kinds():
                    reg.remove_plugin(info.name)
            finally:
                registry._origin = PluginOrigin("<direct>")
    for info, obj in candidates:  # a failed plugin takes no part in runs either
        if info.error is not None and pm.is_registered(obj):
            pm.unregister(obj)
    return regs


def failure_lines(regs: Registries) -> list[str]:
    """One line per plugin that failed, saying how to disable it."""
    return [
        f'Error loading plugin "{p.name}" from {p.origin}: {p.error} '
        f"(disable it with --disable-plugin {p.name} or {DISABLE_ENV}={p.name})"
        for p in regs.failed
    ]


def _entry_points() -> list:
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


_DEFAULT_GROUP = "metagan (built-in)"


def _default_entry_points() -> list:
    """:data:`DEFAULT_PLUGINS` as entry points, so one guarded walk loads them and the rest."""
    return [
        importlib.metadata.EntryPoint(name, value, _DEFAULT_GROUP)
        for name, value in DEFAULT_PLUGINS
    ]


def _culprit(caller, exc: BaseException) -> str:
    """The plugin whose hook function is on ``exc``'s traceback (the first one, from the top)."""
    codes = {}
    for impl in caller.get_hookimpls():
        code = getattr(impl.function, "__code__", None)
        if code is not None:
            codes[code] = impl.plugin_name
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return codes[tb.tb_frame.f_code]
        tb = tb.tb_next
    return "?"


def _unknown_hooks(pm: pluggy.PluginManager, obj: Any) -> str | None:
    for attr in dir(obj):
        if attr.startswith("metagan_") and attr not in ALL_HOOKS:
            if pm.parse_hookimpl_opts(obj, attr) is not None:
                return attr
    return None


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


_cache: dict[tuple[str, ...], Registries] = {}


def get(disabled: Iterable[str] = ()) -> Registries:
    """Load once per set of disabled plugins (entry points are read on first use)."""
    key = tuple(sorted(set(disabled) | set(disabled_from_env())))
    if key not in _cache:
        _cache[key] = load(disabled=key)
    return _cache[key]
