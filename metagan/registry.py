"""One generic name → object registry for every kind of plugin contribution.

Duplicate names within a kind raise and name both plugins; an unknown name raises with
close-match suggestions and the command that lists the valid names (``metagan plugins``).
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
        self._entries: dict[str, Entry] = {}
        self._origin = PluginOrigin("<direct>")

    def add(self, name: str, obj: Any, *, description: str = "") -> None:
        """Register ``obj`` under ``name``; a name already taken raises naming both plugins."""
        if (
            not isinstance(name, str)
            or not name
            or not name.replace("_", "").replace("-", "").isalnum()
        ):
            raise PluginError(
                f"plugin {self._origin.plugin!r} registered an invalid {self.kind} name {name!r}; "
                "names are non-empty and use letters, digits, '-' and '_'"
            )
        if name in self._entries:
            other = self._entries[name]
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {other.plugin!r} "
                f"({_dist(other)}) and by plugin {self._origin.plugin!r} ({_dist(self._origin)}); "
                f"disable one with --disable-plugin NAME or METAGAN_DISABLE_PLUGINS=NAME"
            )
        if not description:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            description = doc.splitlines()[0] if doc else ""
        o = self._origin
        self._entries[name] = Entry(name, self.kind, obj, o.plugin, o.dist, o.version, description)

    def get(self, name: str) -> Any:
        """The object registered under ``name``; unknown names raise with suggestions."""
        return self.entry(name).obj

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            pass
        valid = self.names()
        close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}; {hint}valid: {', '.join(valid) or '(none)'} "
            f"(`metagan plugins` lists them with the plugin that provides each)"
        ) from None

    def names(self, include: str | None = None, exclude: str | None = None) -> list[str]:
        """Sorted names, optionally filtered by ``fnmatch`` wildcards."""
        out = sorted(self._entries)
        if include:
            out = [n for n in out if fnmatch.fnmatch(n, include)]
        if exclude:
            out = [n for n in out if not fnmatch.fnmatch(n, exclude)]
        return out

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def _dist(o: Entry | PluginOrigin) -> str:
    if o.dist is None:
        return "not from an installed distribution"
    return f"{o.dist}=={o.version}" if o.version else o.dist
