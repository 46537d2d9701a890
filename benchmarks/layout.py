"""The shape of the code, measured: imports pointing back up, import cycles, the largest files,
and the call walk from `metagan train` to the engine.

    .venv/bin/python benchmarks/layout.py [--walk]

Imports are read with ``ast`` as tests/test_layout.py reads them (module-level and local).
"Pointing back up": an import of the package face (``metagan/__init__.py``, which imports the
API and training) from inside the package, or an import that closes a cycle. The walk: a tiny
`metagan train` (1 iteration) is traced; at the engine's first ``adapt`` call the metagan
frames on the stack, from ``metagan.cli`` down, are the walk; a *climb* is a call into a
module that the caller does not import (directly or through others): control going against
the import direction (a callback into a higher layer).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_layout import _cycles as cycles  # noqa: E402 - the suite's own reading of the imports
from test_layout import _graph  # noqa: E402


def graph() -> dict[str, set[str]]:
    """module -> the metagan modules it imports (tests/test_layout.py's reading)."""
    g = _graph()
    return {
        m: {d for d in deps if d == "metagan" or d.startswith("metagan.")} for m, deps in g.items()
    }


def reach(g, start) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for dep in g.get(stack.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return seen


def walk(g) -> list[str]:
    import torch

    torch.set_num_threads(1)
    from metagan.cli import main
    from metagan.inner import BatchedEngine

    stack_mods: list[str] = []
    calls: list[tuple[str, str]] = []  # (caller, callee) module of every cross-module call

    def prof(frame, event, arg):
        if event == "call":
            callee = frame.f_globals.get("__name__", "")
            back = frame.f_back
            caller = back.f_globals.get("__name__", "") if back is not None else ""
            if callee != caller and callee.startswith("metagan") and caller.startswith("metagan"):
                calls.append((caller, callee))

    def grab(*a, **k):
        sys.setprofile(None)
        f = sys._getframe(1)
        frames = []
        while f is not None:
            frames.append(f.f_globals.get("__name__", "?"))
            f = f.f_back
        stack_mods.extend(m for m in reversed(frames) if m.startswith("metagan"))
        raise SystemExit(0)

    BatchedEngine.adapt = grab
    with tempfile.TemporaryDirectory() as tmp:
        sys.setprofile(prof)
        try:
            main(["train", "--algorithm", "fomaml", "--iterations", "1", "--out", f"{tmp}/r",
                  "model.width=8", "model.z_dim=16", "meta.tasks=2", "inner.steps=1",
                  "run.progress=false", "run.sample_every=0"])  # fmt: skip
        except SystemExit:
            pass
        finally:
            sys.setprofile(None)
    collapsed = [m for i, m in enumerate(stack_mods) if i == 0 or stack_mods[i - 1] != m]
    return collapsed, calls


def main() -> None:
    g = graph()
    n_imports = sum(len(d) for d in g.values())
    face = sorted(m for m, d in g.items() if "metagan" in d and m != "metagan")
    cyc = cycles(g)
    print(f"modules: {len(g)}; imports between them: {n_imports}")
    print(f"imports of the package face from inside: {len(face)} {face}")
    print(f"import cycles: {len(cyc)} {cyc[:5]}")
    sizes = sorted(
        ((len(p.read_text().splitlines()), str(p.relative_to(ROOT)))
         for d in ("metagan", "plugins") for p in (ROOT / d).rglob("*.py")),
        reverse=True,
    )  # fmt: skip
    print("largest files (lines):", ", ".join(f"{p} {n}" for n, p in sizes[:8]))
    print("files over 400 lines outside tests:", [p for n, p in sizes if n > 400])
    if "--walk" in sys.argv:
        w, calls = walk(g)
        climbs = [
            (a, b) for a, b in zip(w, w[1:])
            if b in g and a in g and b not in reach(g, a)
        ]  # fmt: skip
        print(f"walk from `metagan train` to BatchedEngine.adapt: {len(w)} frames (modules):")
        print("  " + " -> ".join(w))
        print(
            f"climbs on that stack (a call into a module the caller does not import): {len(climbs)} {climbs}"
        )
        up = [(a, b) for a, b in calls if a in g and b in g and b not in reach(g, a)]
        print(f"every cross-module call before it: {len(calls)}; climbs among them: {len(up)}")
        from collections import Counter

        print("  climbs by (caller -> callee):", dict(Counter(up).most_common(12)))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
