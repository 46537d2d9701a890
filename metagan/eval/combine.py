"""Reading several evaluations together (``benchmarks/combine_results.py``, the tables of
docs/results.md): one table over runs, adaptation curves of two rows, the augmentation
protocol's choices and each generator against the best free row."""

from __future__ import annotations

from metagan.eval.report import COLUMNS, _choices, _fmt, _is_free_protocol, free_protocol


def combine(results: dict[str, dict]) -> str:
    """One Markdown table over several evaluations (e.g. the 5 held-out alphabets of small1):
    every metric averaged over them, ± a 95% t-interval over the evaluations."""
    from metagan.eval.metrics import mean_ci

    names = list(results)
    first = results[names[0]]
    lines = [
        f"Averaged over {len(names)} evaluations ({', '.join(names)}); ± is a 95% interval "
        "over them."
    ]
    for K in first["shots"]:
        lines += ["", f"### K = {K} shots", ""]
        head = ["row", *[c[1] for c in COLUMNS], "failed classes", "FID floor"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        floor = mean_ci([results[n]["shots"][K]["floor"]["fid"] for n in names])
        for row in first["shots"][K]["rows"]:
            cells = [row]
            for key, _, _ in COLUMNS:
                cells.append(
                    _fmt(*mean_ci([results[n]["shots"][K]["rows"][row][key] for n in names]))
                )
            cells.append(
                str(sum(results[n]["shots"][K]["rows"][row]["failed_classes"] for n in names))
            )
            cells.append(_fmt(*floor))
            lines.append("| " + " | ".join(cells) + " |")
    if first["augment"] and _is_free_protocol(first["augment"]):
        lines += free_protocol(results)
        lines += against_reference(results)
        return "\n".join(lines) + "\n"
    if first["augment"]:
        ks = list(first["augment"])
        lines += ["", "### Few-shot classification (test accuracy)", ""]
        lines.append("| arm | " + " | ".join(f"k = {k}" for k in ks) + " |")
        lines.append("|---|" + "---|" * len(ks))

        def row_of(label, get):
            vals = [_fmt(*mean_ci([get(results[n]["augment"][k]) for n in names])) for k in ks]
            lines.append(f"| {label} | " + " | ".join(vals) + " |")

        row_of("real only", lambda a: a["real"])
        row_of("real + affine", lambda a: a["real+affine"])
        for g in first["augment"][ks[0]]["rows"]:
            row_of(f"real + {g} samples", lambda a, g=g: a["rows"][g]["real+gen"])
            row_of(f"real + {g} samples + affine", lambda a, g=g: a["rows"][g]["real+gen+affine"])
            row_of(f"**gain of {g}** (vs real + affine)", lambda a, g=g: a["rows"][g]["gain"])
        for n in names:
            lines += [f"{n}:" + line.removeprefix("\n") for line in _choices(results[n]["augment"])]
    lines += against_affine(results)
    return "\n".join(lines) + "\n"


def adaptation(results: dict[str, dict], meta: str, base: str) -> list[str]:
    """Does meta-learning earn its place? Per K: FID and fidelity of two adapting rows (e.g. a
    meta-learned initialisation and the same architecture fine-tuned without meta-learning)
    at some adaptation steps, averaged over the evaluations; then, per evaluation, the first
    step at which ``meta`` reaches ``base``'s FID (and fidelity) after the last step."""
    from metagan.eval.metrics import mean_ci

    names = list(results)
    first = results[names[0]]
    out = []
    for K, block in first["shots"].items():
        if meta not in block["curves"] or base not in block["curves"]:
            continue
        last = max(int(s) for s in block["curves"][meta])
        shown = [s for s in (0, 1, 2, 3, 5, 10, 20, last) if s <= last]
        shown = sorted(set(shown))
        out += ["", f"### Adaptation curves, K = {K} (mean over {len(names)} evaluations)", ""]
        out.append("| row | metric | " + " | ".join(f"step {s}" for s in shown) + " |")
        out.append("|---|---|" + "---|" * len(shown))
        for row in (meta, base):
            for key in ("fid", "fidelity"):
                cells = [
                    _fmt(
                        *mean_ci(
                            [results[n]["shots"][K]["curves"][row][str(s)][key] for n in names]
                        )
                    )  # fmt: skip
                    for s in shown
                ]
                out.append(f"| {row} | {key} | " + " | ".join(cells) + " |")
        out += ["", f"| evaluation (K = {K}) | {base} FID at step {last} | first step {meta} "
                f"reaches it | {base} fidelity at step {last} | first step {meta} reaches it |",
                "|---|---|---|---|---|"]  # fmt: skip
        for n in names:
            curves = results[n]["shots"][K]["curves"]
            c_meta = {int(s): v for s, v in curves[meta].items()}
            target = curves[base][str(last)]
            fid_at = next((s for s in sorted(c_meta) if c_meta[s]["fid"] <= target["fid"]), None)
            fi_at = next(
                (s for s in sorted(c_meta) if c_meta[s]["fidelity"] >= target["fidelity"]), None
            )
            show = lambda s: "never" if s is None else str(s)  # noqa: E731
            out.append(
                f"| {n} | {target['fid']:.3f} | {show(fid_at)} | {target['fidelity']:.3f} | "
                f"{show(fi_at)} |"
            )
    return out


def against_affine(results: dict[str, dict]) -> list[str]:
    """How many of the evaluations each generator beats `affine` in: lower FID, higher
    fidelity, and (per k of the augmentation protocol) a positive gain over real + affine.
    An average can hide a split verdict; this shows it."""
    names = list(results)
    first = results[names[0]]
    out = []
    for K, block in first["shots"].items():
        if "affine" not in block["rows"]:
            continue
        gans = [r for r in block["rows"] if r not in ("shots", "affine")]
        if not gans:
            continue
        ks = list(first["augment"]) if first["augment"] else []
        head = ["row", "FID < affine", "fidelity > affine", *[f"gain > 0 (k = {k})" for k in ks]]
        out += ["", f"### Against `affine`, per evaluation (K = {K}; of {len(names)})", ""]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for g in gans:
            rows = [results[n]["shots"][K]["rows"] for n in names]
            cells = [
                g,
                str(sum(r[g]["fid"] < r["affine"]["fid"] for r in rows)),
                str(sum(r[g]["fidelity"] > r["affine"]["fidelity"] for r in rows)),
            ]
            for k in ks:
                augs = [results[n]["augment"][k]["rows"].get(g) for n in names]
                cells.append(str(sum(a is not None and a["gain"] > 0 for a in augs)))
            out.append("| " + " | ".join(cells) + " |")
    return out


def against_reference(results: dict[str, dict]) -> list[str]:
    """Per generator and k: in how many evaluations its samples beat the best free row on
    validation (gain > 0), and per K whether its class fidelity reaches that free row's."""
    names = list(results)
    first = results[names[0]]
    ks = list(first["augment"])
    gens = [g for g, r in first["augment"][ks[0]]["rows"].items() if not r["free"]]
    if not gens:
        return []
    Ks = list(first["shots"])
    head = ["row", *[f"gain > 0 (k = {k})" for k in ks],
            *[f"fidelity ≥ reference's (K = {K})" for K in Ks]]  # fmt: skip
    out = ["", f"### Against the best free row, per evaluation (of {len(names)})", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for g in gens:
        cells = [g]
        for k in ks:
            cells.append(str(sum(results[n]["augment"][k]["rows"][g]["gain"] > 0 for n in names)))
        for K in Ks:
            wins = 0
            for n in names:  # the reference's free row at the k nearest K (its strengths)
                aug = results[n]["augment"]
                k = min(aug, key=lambda k: (abs(int(k) - int(K)), int(k)))
                ref = aug[k]["reference"]["row"].removesuffix(" samples")
                rows = results[n]["shots"][K]["rows"]
                wins += rows[g]["fidelity"] >= rows[ref]["fidelity"]
            cells.append(str(wins))
        out.append("| " + " | ".join(cells) + " |")
    return out
