"""``metagan eval``: score generators on the meta-test classes, against free baselines.

For every meta-test class and every K: the first K images of a seeded permutation are the
shots, the rest of the class is what samples are scored against (never the shots). Every source
(see :mod:`metagan.eval.sources`) turns the shots into samples; GAN sources are scored after
every adaptation step. Then the augmentation protocol (DAGAN/F2GAN, with the free arms they
lack) trains one classifier per arm on k real images per class and tests on the rest: every
free row (:mod:`metagan.eval.free`) on the fly and as samples, every generator's samples, each
judged against the best free row on validation classes.
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import Tensor

from metagan.errors import ConfigError, DataError
from metagan.eval import free
from metagan.eval import metrics as M
from metagan.eval.classifier import embed, fit, predict
from metagan.eval.data import EvalConfig, curve_points, load_classes, validation_classes
from metagan.eval.features import Features
from metagan.eval.protocol import _strengths_for, augmentation, choose_protocol
from metagan.eval.sources import CheckpointSource, FreeSource, ShotsSource, Source


def check_source(src: CheckpointSource, features: Features) -> None:
    d, f = src.cfg.data, features.data
    for key in ("image_size", "invert"):
        if getattr(d, key) != f[key]:
            raise ConfigError(
                f"{src.path} was trained with data.{key}={getattr(d, key)!r} but the feature "
                f"extractor {features.path} with {f[key]!r}; fit features with the same data config"
            )
    names = [c.name for c in src.session.dataset.classes]
    theirs = [names[i] for i in src.session.split[1]]
    if theirs != features.test_classes:
        raise ConfigError(
            f"{src.path} holds out other meta-test classes than the feature extractor "
            f"{features.path} ({len(theirs)} vs {len(features.test_classes)} classes, "
            f"first {theirs[:1]} vs {features.test_classes[:1]}); use the same data split"
        )


def _pooled(groups: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    return torch.cat([g[0] for g in groups]), torch.cat([g[1] for g in groups])


def score(
    fake: list[Tensor],
    fake_pred: list[Tensor],
    real: list[Tensor],
    shots: list[Tensor],
    *,
    bootstrap: int = 0,
    seed: int = 0,
) -> dict:
    """All metrics of one source at one step. Per class c: ``fake[c]`` (num, F) features of its
    samples, ``fake_pred[c]`` (num,) the fidelity classifier's predictions, ``real[c]`` (N_c, F)
    features of its non-shot images, ``shots[c]`` (K, F) features of its shots."""
    groups = list(zip(real, fake))

    def fid_of(gs):
        r, f = _pooled(gs)
        return M.fid(r, f)

    if bootstrap:
        fid, fid_ci = M.bootstrap_ci(fid_of, groups, resamples=bootstrap, seed=seed)
    else:
        fid, fid_ci = fid_of(groups), float("nan")
    r, f = _pooled(groups)
    kid, kid_std = M.kid(r, f, seed=seed)
    fidelity = [float((p == c).double().mean()) for c, p in enumerate(fake_pred)]
    memo = [M.memorisation_ratio(fk, sh, rl) for fk, sh, rl in zip(fake, shots, real)]
    div = [M.diversity(fk) / M.diversity(rl) for fk, rl in zip(fake, real)]
    out = {"fid": fid, "fid_ci": fid_ci, "kid": kid, "kid_std": kid_std, **M.prdc(r, f, k=3)}
    for name, vals in (("fidelity", fidelity), ("memorisation", memo), ("diversity", div)):
        out[name], out[name + "_ci"] = M.mean_ci(vals)
    return out


def evaluate(
    features: Features,
    sources: list[Source],
    cfg: EvalConfig,
    registries,
    *,
    log=print,
) -> dict:
    """The whole evaluation as one JSON-ready dict (see :mod:`metagan.eval.report`)."""
    t0 = time.perf_counter()
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"two rows are named {dup[0]!r}; name them apart with NAME=CHECKPOINT")
    gans = [s for s in sources if isinstance(s, CheckpointSource)]
    for g in gans:
        check_source(g, features)
    steps = cfg.steps
    if steps is None:
        found = sorted({g.cfg.inner.steps for g in gans}) or [0]
        if len(found) > 1:
            raise ConfigError(
                f"the checkpoints were trained with different inner.steps {found}; "
                "pass --steps S so that every generator gets the same adaptation budget"
            )
        steps = found[0]
    classes, session = load_classes(features, registries, cfg.seed, cfg.classes)
    n_min = min(x.shape[0] for x in classes.images)
    need = max((*cfg.shots, *cfg.augment_k)) + 2
    if n_min < need:
        raise DataError(
            f"a meta-test class has only {n_min} images; K={max((*cfg.shots, *cfg.augment_k))} "
            f"needs at least {need} (K shots plus 2 to score against); lower --shots/--augment-k"
        )
    net = features.net
    bg = free.background_of_data(features.data)
    free_rows = [s for s in sources if isinstance(s, FreeSource)]
    T = len(classes.names)
    log(f"eval: {T} meta-test classes, rows {', '.join(names)}, S = {steps} adaptation steps")
    result = {
        "env": environment(),
        "classes": classes.names,
        "steps": steps,
        "config": _jsonable(dataclasses.asdict(cfg)) | {"steps": steps},
        "extractor": {
            "path": str(features.path),
            "accuracy": features.accuracy,
            "train_classes": len(features.train_classes),
        },
        "rows": {s.name: _describe(s) for s in sources},
        "shots": {},
        "augment": {},
    }
    # the choices come first (on validation classes of the meta-train side): the free rows of
    # the main table use the strengths chosen for the protocol's k nearest their K
    choices = {}
    if cfg.augment_k:
        if not free_rows:
            raise ConfigError(
                "the augmentation protocol judges every row against the best free row: keep at "
                "least one free --reference (affine, elastic, stroke, ...), or skip the protocol "
                "with --augment-k and no value"
            )
        val = validation_classes(session, cfg.val_classes, cfg.seed)
        for k in cfg.augment_k:
            choices[k] = choose_protocol(val, free_rows, gans, k, steps, cfg, bg, log=log)
    for K in cfg.shots:
        shots, real = classes.split(K)  # (T, K, C, H, W); per class (N_c - K, C, H, W)
        real_f = [embed(net, x) for x in real]
        shot_f = [embed(net, x) for x in shots]
        # the class-fidelity judge: trained on the real non-shot images of the meta-test classes
        y = torch.cat([torch.full((x.shape[0],), c) for c, x in enumerate(real)])
        judge = fit(torch.cat(real), y, T, dataclasses.replace(cfg.classifier, seed=cfg.seed))
        halves = [(x[0::2], x[1::2]) for x in real_f]
        a, b = _pooled(halves)
        entry = {
            "floor": {"fid": M.fid(a, b), "kid": M.kid(a, b, seed=cfg.seed)[0]},
            "rows": {},
            "curves": {},
        }
        log(f"K={K}: real-vs-real FID floor {entry['floor']['fid']:.3f}")
        strengths = _strengths_for(K, choices)
        for src in sources:
            if isinstance(src, FreeSource):
                src = src.at(strengths)
            per_step = src.samples(shots, cfg.num, steps=curve_points(steps, cfg.curve_steps),
                                   seed=cfg.seed)  # fmt: skip
            row_step = steps if steps in per_step else max(per_step)  # references: step 0
            curve = {}
            for step, smp in per_step.items():
                fake_f = [embed(net, x) for x in smp.images]
                preds = [predict(judge, x) for x in smp.images]
                m = score(fake_f, preds, real_f, shot_f,
                          bootstrap=cfg.bootstrap if step == row_step else 0, seed=cfg.seed)  # fmt: skip
                m["failed_classes"] = int(smp.failed.sum())
                curve[step] = m
            entry["curves"][src.name] = curve
            entry["rows"][src.name] = curve[row_step] | {"step": row_step}
            if isinstance(src, FreeSource):
                entry["rows"][src.name]["strengths"] = src.strengths
            r = entry["rows"][src.name]
            log(
                f"K={K} {src.name:<10} FID {r['fid']:.3f}  fidelity {r['fidelity']:.3f}  "
                f"memorisation {r['memorisation']:.3f}  diversity {r['diversity']:.3f}"
            )
        result["shots"][K] = entry
    for k, choice in choices.items():
        result["augment"][k] = augmentation(classes, free_rows, gans, k, steps, cfg, bg,
                                            choice, log=log) | {"choice": choice}  # fmt: skip
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def environment() -> dict:
    """What produced the numbers: versions, the CPU model, GPU if any, and the date."""
    import datetime
    import platform

    from metagan._version import __version__

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "metagan": __version__,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.date.today().isoformat(),
    }


def _describe(src: Source) -> dict:
    if isinstance(src, CheckpointSource):
        c = src.cfg
        return {"checkpoint": str(src.path), "algorithm": c.meta.algorithm, "arch": c.model.arch,
                "meta_iterations": src.step, "inner": dataclasses.asdict(c.inner)}  # fmt: skip
    if isinstance(src, FreeSource):
        return {"reference": "free", "parts": list(src.parts)}
    if isinstance(src, ShotsSource):
        return {"reference": "shots"}
    if hasattr(src, "jitter"):  # a fixed row, e.g. the colour references of eval/photo.py
        return {"reference": src.name, **_jsonable(dataclasses.asdict(src.jitter))}
    return {}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
