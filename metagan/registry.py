"""One generic name → object registry for every kind of plugin contribution.

Every entry is also reachable as ``plugin:name`` (``metagan train --algorithm halfstep:anil``).
A name that two plugins register is kept for both: listing shows both, and only *using* the
bare name fails, with a one-line error that names both plugins and the ``plugin:name`` choices.
An unknown name raises with close-match suggestions and the command that lists the valid names
(``metagan plugins``).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any

from metagan.errors import PluginError, UnknownNameError


@dataclass(frozen=True)
class Entry:
    """One registered object and where it came from."""

    name: str
    kind: str
    obj: Any
    plugin: str  # the plugin's short name (its entry-point name)
    dist: str | None  # the distribution that ships the plugin, e.g. "metagan"
    version: str | None  # that distribution's version
    description: str = ""


@dataclass(frozen=True)
class PluginOrigin:
    """Which plugin is calling ``registry.add`` right now."""

    plugin: str
    dist: str | None = None
    version: str | None = None


class Registry:
    """Name → :class:`Entry` for one kind ("dataset", "architecture", "algorithm", "loss")."""

    def __init__(self, kind: str, *, flag: str | None = None):
        self.kind = kind
        self.flag = flag or f"--{kind}"
        self._entries: dict[str, Entry] = {}  # names registered once
        self._clashes: dict[str, list[Entry]] = {}  # names registered by several plugins
        self._origin = PluginOrigin("<direct>")

    def add(self, name: str, obj: Any, *, description: str = "") -> None:
        """Register ``obj`` under ``name`` (and ``plugin:name``). A name another plugin took
        as well is kept for both; using it bare then asks for ``plugin:name``."""
        if (
            not isinstance(name, str)
            or not name
            or not name.replace("_", "").replace("-", "").isalnum()
        ):
            raise PluginError(
                f"plugin {self._origin.plugin!r} registered an invalid {self.kind} name {name!r}; "
                "names are non-empty and use letters, digits, '-' and '_'"
            )
        if not description:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        o = self._origin
        if any(e.plugin == o.plugin for e in self._all(name)):
            raise PluginError(f"plugin {o.plugin!r} registered the {self.kind} name {name!r} twice")
        new = Entry(name, self.kind, obj, o.plugin, o.dist, o.version, description)
        if name in self._entries:
            self._clashes[name] = [self._entries.pop(name), new]
        elif name in self._clashes:
            self._clashes[name].append(new)
        else:
            self._entries[name] = new

    def get(self, name: str) -> Any:
        """The object registered under ``name`` or ``plugin:name``; unknown names raise with
        suggestions, a name two plugins registered asks for ``plugin:name``."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        plugin, sep, bare = str(name).rpartition(":")
        if sep:
            for e in self._all(bare):
                if e.plugin == plugin:
                    return e
        elif name in self._entries:
            return self._entries[name]
        elif name in self._clashes:
            both = self._all(name)
            by = " and ".join(f"plugin {e.plugin!r} ({_dist(e)})" for e in both)
            choices = " or ".join(f"{e.plugin}:{name}" for e in both)
            raise PluginError(
                f"{self.kind} {name!r} is registered by {by}; choose one with {choices} "
                f"(or disable a plugin with --disable-plugin NAME)"
            )
        valid = self.names()
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; {hint}valid: {', '.join(valid) or '(none)'} "
            f"(`metagan plugins` lists them with the plugin that provides each)"
        ) from None

    def names(self, include: str | None = None, exclude: str | None = None) -> list[str]:
        """Sorted names (each once, clashing ones too), optionally filtered by ``fnmatch``
        wildcards."""
        out = sorted({*self._entries, *self._clashes})
        if include:
            out = [n for n in out if fnmatch.fnmatch(n, include)]
        if exclude:
            out = [n for n in out if not fnmatch.fnmatch(n, exclude)]
        return out

    def entries(self) -> list[Entry]:
        """Every registered entry by name, both of a clashing name (see :meth:`clashes`)."""
        return [e for n in self.names() for e in self._all(n)]

    def clashes(self) -> list[str]:
        """Names registered by more than one plugin (usable only as ``plugin:name``)."""
        return sorted(self._clashes)

    def remove_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered (it failed while registering)."""
        for name in self.names():
            keep = [e for e in self._all(name) if e.plugin != plugin]
            self._entries.pop(name, None)
            self._clashes.pop(name, None)
            if len(keep) == 1:
                self._entries[name] = keep[0]
            elif keep:
                self._clashes[name] = keep

    def _all(self, name: str) -> list[Entry]:
        if name in self._entries:
            return [self._entries[name]]
        return sorted(self._clashes.get(name, ()), key=lambda e: e.plugin)

    def __contains__(self, name: object) -> bool:
        try:
            self.entry(name)
        except UnknownNameError:
            return False
        except PluginError:  # registered by several plugins: there, but only as plugin:name
            return True
        return True

    def __len__(self) -> int:
        return len(self._entries) + sum(len(v) for v in self._clashes.values())


def _dist(o: Entry | PluginOrigin) -> str:
    if o.dist is None:
        return "not from an installed distribution"
    return f"{o.dist}=={o.version}" if o.version else o.dist
