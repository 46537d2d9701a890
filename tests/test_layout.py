"""The import graph points one way (docs/architecture.md, "Who owns what").

Read from the source with ``ast`` (module-level and function-local imports alike), so a lazy
import inside a function cannot hide a wrong-way dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import metagan

PKG = Path(metagan.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports, absolute (``from metagan import x`` counts as
    ``metagan.x`` when x is a submodule, else as ``metagan``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                is_sub = (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    PKG.parent / Path(*sub.split("."))
                ).is_dir()
                found.add(sub if is_sub else node.module)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PKG.rglob("*.py") if "__pycache__" not in p.parts}


def _reaches(graph, start: str, prefix: str) -> list[str]:
    """A path of imports from ``start`` to a module named ``prefix`` or under it, or []."""
    seen, stack = {start}, [(start, [start])]
    while stack:
        mod, trail = stack.pop()
        for dep in graph.get(mod, ()):
            if dep == "metagan":  # the package face re-exports; it is nobody's dependency
                continue
            if dep == prefix or dep.startswith(prefix + "."):
                return trail + [dep]
            if dep in graph and dep not in seen:
                seen.add(dep)
                stack.append((dep, trail + [dep]))
    return []


def test_training_never_imports_evaluation_or_the_command_line():
    graph = _graph()
    assert "metagan.adaptation" in graph and "metagan.train" in graph
    starts = ("metagan.train", "metagan.adaptation", "metagan.distributed", "metagan.session")
    starts += ("metagan.stepping", *(m for m in graph if m.startswith("metagan.loggers")))
    for start in starts:
        for forbidden in ("metagan.eval", "metagan.cli", "metagan.bench"):
            assert _reaches(graph, start, forbidden) == [], (start, forbidden)


def test_core_never_imports_the_builtin_plugins():
    graph = _graph()
    bad = {
        mod: dep
        for mod, deps in graph.items()
        for dep in deps
        if dep.startswith(("metagan_builtin", "plugins.metagan_builtin"))
    }
    assert bad == {}


def test_the_checker_sees_a_wrong_way_import(tmp_path):
    # the checker itself: a path through a local (function-level) import is found
    graph = {"a": {"b"}, "b": {"metagan.eval.run"}}
    assert _reaches(graph, "a", "metagan.eval") == ["a", "b", "metagan.eval.run"]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from metagan.eval import metrics\n")
    assert "metagan.eval.metrics" in _imports(src)


# The layers, bottom up (docs/architecture.md, "Who owns what"): a module imports only from its
# own layer or below. Every module of the package must be placed (a prefix covers a folder).
LAYERS = (
    (  # core: contracts, engine, formats
        "metagan._version", "metagan.errors", "metagan.io", "metagan.registry",
        "metagan.hookspecs", "metagan.plugins", "metagan.config", "metagan.models",
        "metagan.losses", "metagan.ops", "metagan.memory", "metagan.inner", "metagan.sequential",
        "metagan.algorithm",
        "metagan.data", "metagan.checkpoint", "metagan.graphs", "metagan.testing",
        "metagan.pretrained", "metagan.transforms", "metagan.registration", "metagan.rundir",
        "metagan.fewshot",
    ),
    ("metagan.session", "metagan.adaptation"),
    ("metagan.distributed", "metagan.stepping", "metagan.loggers", "metagan.train"),
    ("metagan.api", "metagan.eval", "metagan.bench"),
    ("metagan.cli", "metagan.__main__", "metagan"),  # "metagan": the package face
)  # fmt: skip
CORE = LAYERS[0]


def _layer(mod: str) -> int | None:
    best = None  # the longest matching prefix decides ("metagan" is only the face itself)
    for i, layer in enumerate(LAYERS):
        for m in layer:
            if (mod == m or (m != "metagan" and mod.startswith(m + "."))) and (
                best is None or len(m) > len(best[1])
            ):
                best = (i, m)
    return None if best is None else best[0]


def _in(mod: str, layer) -> bool:
    return any(mod == m or mod.startswith(m + ".") for m in layer)


def test_every_module_imports_only_its_layer_or_below():
    graph = _graph()
    unplaced = sorted(m for m in graph if _layer(m) is None)
    assert unplaced == [], "place these modules in a layer of LAYERS (and docs/architecture.md)"
    up = sorted(
        (mod, dep)
        for mod, deps in graph.items()
        for dep in deps
        if dep.startswith("metagan") and _layer(dep) is not None and _layer(dep) > _layer(mod)
    )
    assert up == []
    assert _layer("metagan.train") > _layer("metagan.session") > _layer("metagan.inner")


def test_core_never_imports_session_training_or_the_command_line():
    graph = _graph()
    core = [m for m in graph if _in(m, CORE) and m != "metagan"]
    assert "metagan.inner" in core and "metagan.ops" in core
    for start in core:
        for forbidden in ("metagan.session", "metagan.train", "metagan.cli", "metagan.api"):
            assert _reaches(graph, start, forbidden) == [], (start, forbidden)


def test_nothing_imports_the_package_face():
    """``metagan/__init__.py`` imports the API and training: importing it from inside the
    package points back up (``metagan._version`` holds the version for everyone)."""
    graph = _graph()
    assert {m for m, deps in graph.items() if "metagan" in deps and m != "metagan"} == set()


def _cycles(graph) -> list[list[str]]:
    """Import cycles found by a depth-first walk (each as the trail that closes it)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(mod, trail):
        for dep in sorted(graph.get(mod, ())):
            if dep in trail:
                found.append(trail[trail.index(dep) :] + [dep])
            elif dep in graph and dep not in done:
                visit(dep, trail + [dep])
        done.add(mod)

    for mod in sorted(graph):
        if mod not in done:
            visit(mod, [mod])
    return found


def test_no_import_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]  # the checker
    assert _cycles(_graph()) == []
