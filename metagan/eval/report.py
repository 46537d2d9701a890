"""Writing an evaluation: ``results.json`` (everything), ``table.md`` (what a reader compares)
and ``curves.png`` (each metric against the adaptation step)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from metagan.io import atomic_write

# (key, heading, better): the table's metric columns; "+" higher is better, "-" lower
COLUMNS = (
    ("fid", "FID ↓", "-"),
    ("kid", "KID ↓", "-"),
    ("fidelity", "fidelity ↑", "+"),
    ("memorisation", "memorisation (1 = new)", "~"),
    ("diversity", "diversity gen/real", "~"),
    ("precision", "precision", "+"),
    ("recall", "recall", "+"),
    ("density", "density", "~"),
    ("coverage", "coverage", "+"),
)
CURVES = ("fid", "fidelity", "memorisation", "diversity")


def _fmt(v: float, ci: float | None = None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    s = f"{v:.3f}"
    if ci is not None and not math.isnan(ci):
        s += f" ± {ci:.3f}"
    return s


def markdown(res: dict) -> str:
    lines = []
    ex = res["extractor"]
    lines.append(
        f"Meta-test classes: {len(res['classes'])}; adaptation steps S = {res['steps']}; "
        f"{res['config']['num']} samples per class; features: 64-d embedding of a classifier "
        f"trained on {ex['train_classes']} meta-train classes (held-out accuracy "
        f"{ex['accuracy']:.3f}). ± is a 95% interval over classes (bootstrap for FID)."
    )
    env = res.get("env")
    if env:
        lines.append(
            f"\nRun on {env['gpu'] or env['cpu']} (torch threads: {env['cpu_threads']}), torch "
            f"{env['torch']}, metagan {env['metagan']}, {env['date']}; seed {res['config']['seed']}; "
            f"{res['seconds']:.0f} s."
        )
    for K, entry in res["shots"].items():
        lines += ["", f"### K = {K} shots", ""]
        head = [
            "row",
            "steps",
            *[c[1] for c in COLUMNS],
            "failed",
            "FID at step 0",
            "best FID (step)",
            "first step with FID ≤ affine's",
        ]
        affine_fid = entry["rows"].get("affine", {}).get("fid")
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name, r in entry["rows"].items():
            cells = [name, str(r["step"])]
            for key, _, _ in COLUMNS:
                ci = r.get(key + "_ci")
                cells.append(_fmt(r[key], ci))
            cells.append(str(r["failed_classes"]))
            curve = entry["curves"][name]
            if len(curve) > 1:
                best = min(curve, key=lambda st: curve[st]["fid"])
                cells += [
                    _fmt(curve[min(curve, key=int)]["fid"]),
                    f"{curve[best]['fid']:.3f} ({best})",
                ]
                if affine_fid is None:
                    cells.append("–")
                else:  # "fast adaptation": steps needed to reach the free baseline's FID
                    reach = [st for st in sorted(curve, key=int) if curve[st]["fid"] <= affine_fid]
                    cells.append(str(reach[0]) if reach else "never")
            else:
                cells += ["–", "–", "–"]
            lines.append("| " + " | ".join(cells) + " |")
        f = entry["floor"]
        lines.append(
            f"\nReal vs real (one half of the non-shot images against the other): FID "
            f"{f['fid']:.3f}, KID {f['kid']:.4f}. That is the sampling noise of the real data at "
            "half its size; FID shrinks with the sample size, so a row scored against all of "
            "them (e.g. `shots`) can come out below it."
        )
        beat = _verdict(entry)
        if beat:
            lines.append("\n" + beat)
    if res["augment"] and _is_free_protocol(res["augment"]):
        lines += free_protocol({"": res})
    elif res["augment"]:  # evaluations made before the free rows (2026-12-03)
        lines += ["", "### Few-shot classification with generated data (test accuracy)", ""]
        ks = list(res["augment"])
        lines.append("| arm | " + " | ".join(f"k = {k}" for k in ks) + " |")
        lines.append("|---|" + "---|" * len(ks))
        aug = res["augment"]
        lines.append("| real only | " + " | ".join(_fmt(aug[k]["real"]) for k in ks) + " |")
        lines.append(
            "| real + affine | " + " | ".join(_fmt(aug[k]["real+affine"]) for k in ks) + " |"
        )
        rows = list(aug[ks[0]]["rows"])
        for name in rows:
            for arm in ("real+gen", "real+gen+affine"):
                label = arm.replace("gen", f"{name} samples").replace("+", " + ")
                lines.append(
                    f"| {label} | " + " | ".join(_fmt(aug[k]["rows"][name][arm]) for k in ks) + " |"
                )
            lines.append(
                f"| **gain of {name}** (vs real + affine) | "
                + " | ".join(f"{aug[k]['rows'][name]['gain']:+.3f}" for k in ks)
                + " |"
            )
        n = res["config"]["augment_num"]
        lines.append(
            f"\n{n} generated images per class; test images: "
            + ", ".join(f"{aug[k]['test_images']} at k = {k}" for k in ks)
            + "."
        )
        lines += _choices(aug)
    return "\n".join(lines) + "\n"


def _verdict(entry: dict) -> str:
    """Say plainly which GAN rows fail to beat the free `affine` row."""
    rows = entry["rows"]
    if "affine" not in rows:
        return ""
    a = rows["affine"]
    losers = [
        n for n, r in rows.items()
        if n not in ("affine", "shots") and not (r["fid"] < a["fid"] and r["fidelity"] > a["fidelity"])
    ]  # fmt: skip
    if not losers:
        return "Every GAN row beats `affine` on both FID and fidelity."
    return (
        f"Not better than `affine` on both FID and fidelity: {', '.join(losers)} "
        "(these samples add nothing that jittering the shots would not give)."
    )


def write(res: dict, out: str | Path) -> list[Path]:
    """Write results.json, table.md and (when matplotlib is installed) curves.png."""
    out = Path(out)
    paths = [out / "results.json", out / "table.md"]
    with atomic_write(paths[0], "w") as f:
        json.dump(res, f, indent=1)
    with atomic_write(paths[1], "w") as f:
        f.write(markdown(res))
    png = plot(res, out / "curves.png")
    if png:
        paths.append(png)
    return paths


def plot(res: dict, path: Path) -> Path | None:
    """Each metric against the adaptation step, one panel per metric and K."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import io

    Ks = list(res["shots"])
    fig, axes = plt.subplots(
        len(Ks), len(CURVES), figsize=(3.2 * len(CURVES), 2.6 * len(Ks)), squeeze=False
    )
    for i, K in enumerate(Ks):
        entry = res["shots"][K]
        for j, key in enumerate(CURVES):
            ax = axes[i][j]
            for name, curve in entry["curves"].items():
                xs = sorted(curve, key=int)
                ys = [curve[s][key] for s in xs]
                if len(xs) == 1:  # a reference row: a flat line
                    ax.axhline(
                        ys[0],
                        ls="--",
                        lw=1,
                        label=name,
                        color="grey" if name == "shots" else "black",
                    )
                else:
                    ax.plot([int(s) for s in xs], ys, marker=".", label=name)
            if key == "fid":
                ax.axhline(entry["floor"]["fid"], ls=":", lw=1, color="green", label="real floor")
            ax.set_title(f"{key}, K = {K}", fontsize=9)
            ax.set_xlabel("adaptation step", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    return path


def _choices(aug: dict) -> list[str]:
    """The mix ratio and classifier steps each k of the protocol used, and where they were
    chosen (evaluations made before the choice existed have none)."""
    chosen = [(k, a["choice"]) for k, a in aug.items() if "choice" in a]
    if not chosen:
        return []
    n = len(chosen[0][1]["validation"]["classes"])
    return [
        f"\nMix ratio and classifier steps, chosen on {n} validation classes of the meta-train "
        "side and applied to every row: "
        + "; ".join(f"k = {k}: mix {c['mix']}, {c['classifier_steps']} steps" for k, c in chosen)
        + "."
    ]


def _is_free_protocol(aug: dict) -> bool:
    return all("reference" in a for a in aug.values())


def free_protocol(results: dict[str, dict]) -> list[str]:
    """The augmentation protocol with free rows (one evaluation, or the mean ± 95% interval
    over several): real only, every free row on the fly, every sample row, each sample row's
    gain over the best free row on validation, and per evaluation what was chosen there."""
    from metagan.eval.metrics import mean_ci

    names = list(results)
    first = results[names[0]]["augment"]
    ks = list(first)
    one = len(names) == 1
    lines = ["", "### Few-shot classification: free rows and generated samples (test accuracy)",
             "", "| arm | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]  # fmt: skip

    def row(label, get):
        out = []
        for k in ks:
            vals = [get(results[n]["augment"][k]) for n in names]
            out.append(_fmt(vals[0]) if one else _fmt(*mean_ci(vals)))
        lines.append(f"| {label} | " + " | ".join(out) + " |")

    row("real only", lambda a: a["real"])
    for name in first[ks[0]]["onthefly"]:
        row(f"real + {name} (on the fly)", lambda a, n=name: a["onthefly"][n])
    for name in first[ks[0]]["rows"]:
        row(f"real + {name} + best free on the fly", lambda a, n=name: a["rows"][n]["accuracy"])
    row("**best free row on validation** (the reference)", lambda a: a["reference"]["accuracy"])
    for name in first[ks[0]]["rows"]:
        if not first[ks[0]]["rows"][name]["free"]:
            row(f"**gain of {name}** (vs the reference)", lambda a, n=name: a["rows"][n]["gain"])
    lines += ["", "Chosen on validation classes of the meta-train side (per evaluation and k): "
              "strengths, the on-the-fly transform of the sample rows, the mix ratio, the "
              "classifier steps, and the reference (the best free row there).", ""]  # fmt: skip
    lines += ["| evaluation | k | strengths | on the fly | mix | steps | reference |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for n in names:
        for k, a in results[n]["augment"].items():
            c = a["choice"]
            st = ", ".join(f"{p} {v}" for p, v in c["strengths"].items())
            lines.append(f"| {n or '–'} | {k} | {st} | {c['onthefly']} | {c['mix']} | "
                         f"{c['classifier_steps']} | {c['reference']} |")  # fmt: skip
    return lines
