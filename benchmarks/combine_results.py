"""Average several `metagan eval` results (e.g. the 5 held-out alphabets of small1) into one
Markdown table:

    python benchmarks/combine_results.py runs/results/small1/*/eval/results.json
    python benchmarks/combine_results.py --adaptation warp+fomaml:warp+finetune RESULTS.json ...

``--adaptation META:BASE`` adds the adaptation curves of two rows and, per evaluation, the
first step at which META reaches BASE's final FID and fidelity. Each results.json is named by
the folder above its eval/ folder (the held-out alphabet)."""

import argparse
import json
from pathlib import Path

from metagan.eval.combine import adaptation, combine

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path)
    p.add_argument("--adaptation", metavar="META:BASE")
    args = p.parse_args()
    # runs/results/<table>/<fold>/eval/results.json, or docs/results/<table>/<fold>/results.json
    name = lambda r: r.parent.parent.name if r.parent.name == "eval" else r.parent.name  # noqa: E731
    results = {name(r): json.loads(r.read_text()) for r in args.results}
    print(combine(results), end="")
    if args.adaptation:
        meta, _, base = args.adaptation.partition(":")
        print("\n".join(adaptation(results, meta, base)))
