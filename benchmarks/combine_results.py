"""Average several `metagan eval` results (e.g. the 5 held-out alphabets of small1) into one
Markdown table: python benchmarks/combine_results.py runs/results/small1/*/eval/results.json"""

import json
import sys
from pathlib import Path

from metagan.eval.report import combine

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: combine_results.py RESULTS.json [RESULTS.json ...]")
    paths = [Path(p) for p in sys.argv[1:]]
    print(combine({p.parent.parent.name: json.loads(p.read_text()) for p in paths}), end="")
