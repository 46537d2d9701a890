"""``metagan eval``: score generators on the meta-test classes, against free baselines.

For every meta-test class and every K: the first K images of a seeded permutation are the
shots, the rest of the class is what samples are scored against (never the shots). Every source
(see :mod:`metagan.eval.sources`) turns the shots into samples; GAN sources are scored after
every adaptation step. Then the augmentation protocol (DAGAN/F2GAN, with the affine arm they
lack) trains one classifier per arm on k real images per class and tests on the rest.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metagan import config
from metagan.errors import ConfigError, DataError
from metagan.eval import metrics as M
from metagan.eval.affine import AffineJitter, background_of
from metagan.eval.classifier import FitConfig, accuracy, embed, fit, predict
from metagan.eval.features import Features
from metagan.eval.sources import AffineSource, CheckpointSource, ShotsSource, Source


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    shots: tuple[int, ...] = (1, 5)  # K values of the main table
    steps: int | None = None  # adaptation steps S; None: the checkpoints' common inner.steps
    num: int = 32  # samples per class
    augment_k: tuple[int, ...] = (5, 10, 15)  # real images per class in the augmentation protocol
    augment_num: int = 64  # generated images per class there (512 in the F2GAN protocol)
    classifier: FitConfig = field(default_factory=lambda: FitConfig(steps=400))
    bootstrap: int = 100  # class resamples for the FID confidence intervals
    classes: int = 0  # evaluate a seeded random subset of this many meta-test classes; 0 = all
    seed: int = 0

    def __post_init__(self):
        for key in ("num", "augment_num", "bootstrap"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}")
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 0:
            raise ConfigError(f"classes must be an integer >= 0 (0 = all), got {self.classes!r}")
        if self.num < 4:
            raise ConfigError(f"num must be >= 4 samples per class (for KID/PRDC), got {self.num}")
        for k in (*self.shots, *self.augment_k):
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"shot counts must be positive integers, got {k!r}")
        if not self.shots:
            raise ConfigError("shots needs at least one K, e.g. 1 5")
        if self.steps is not None and self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")


@dataclass
class ClassData:
    """The meta-test classes' images in one fixed, seeded order per class."""

    names: list[str]
    images: list[Tensor]  # per class (N_c, C, H, W), permuted: shots are the first K

    def split(self, k: int) -> tuple[Tensor, list[Tensor]]:
        """shots (T, k, C, H, W) and the remaining images of each class."""
        return torch.stack([x[:k] for x in self.images]), [x[k:] for x in self.images]


def load_classes(
    features: Features, registries, seed: int, limit: int = 0
) -> tuple[ClassData, object]:
    """The meta-test classes of the split the extractor was fitted with (``limit`` > 0: a
    seeded random subset of that many, in split order)."""
    from metagan.session import Session

    s = Session(config.from_dict({"data": features.data}), registries)
    names = [c.name for c in s.dataset.classes]
    test = [names[i] for i in s.split[1]]
    if test != features.test_classes:
        raise DataError(
            f"the dataset's meta-test classes differ from those the extractor {features.path} "
            "recorded; the data changed since fit-features: fit it again"
        )
    chosen = list(s.split[1])
    if limit:
        if limit < 2 or limit > len(chosen):
            raise ConfigError(
                f"--classes {limit} is out of range: the split has {len(chosen)} meta-test "
                f"classes; pick 2..{len(chosen)} (0 = all)"
            )
        pick = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed))
        chosen = [chosen[j] for j in sorted(pick[:limit].tolist())]
        test = [names[i] for i in chosen]
    images = []
    for i in chosen:
        x = s.cache.get(i)
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed * 7919 + i))
        images.append(x[perm])
    return ClassData(test, images), s


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
    bg = background_of(bool(features.data["invert"]))
    jitter = AffineJitter(background=bg)
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
        for src in sources:
            per_step = src.samples(shots, cfg.num, steps=list(range(steps + 1)), seed=cfg.seed)
            curve = {}
            for step, smp in per_step.items():
                fake_f = [embed(net, x) for x in smp.images]
                preds = [predict(judge, x) for x in smp.images]
                final = step == max(per_step)
                m = score(fake_f, preds, real_f, shot_f,
                          bootstrap=cfg.bootstrap if final else 0, seed=cfg.seed)  # fmt: skip
                m["failed_classes"] = int(smp.failed.sum())
                curve[step] = m
            entry["curves"][src.name] = curve
            entry["rows"][src.name] = curve[max(curve)] | {"step": max(curve)}
            r = entry["rows"][src.name]
            log(
                f"K={K} {src.name:<10} FID {r['fid']:.3f}  fidelity {r['fidelity']:.3f}  "
                f"memorisation {r['memorisation']:.3f}  diversity {r['diversity']:.3f}"
            )
        result["shots"][K] = entry
    for k in cfg.augment_k:
        result["augment"][k] = augmentation(classes, gans, k, steps, cfg, jitter, log=log)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def augmentation(
    classes: ClassData,
    gans: list[CheckpointSource],
    k: int,
    steps: int,
    cfg: EvalConfig,
    jitter: AffineJitter,
    *,
    log=print,
) -> dict:
    """The four-arm few-shot classification protocol for k real images per class."""
    shots, rest = classes.split(k)  # (T, k, C, H, W); per class the test images
    T = shots.shape[0]
    x_real = shots.flatten(0, 1)
    y_real = torch.arange(T).repeat_interleave(k)
    x_test = torch.cat(rest)
    y_test = torch.cat([torch.full((x.shape[0],), c) for c, x in enumerate(rest)])
    fc = dataclasses.replace(cfg.classifier, seed=cfg.seed)

    def arm(x, y, aug):
        return accuracy(fit(x, y, T, fc, augment=jitter if aug else None), x_test, y_test)

    out = {"real": arm(x_real, y_real, False), "real+affine": arm(x_real, y_real, True), "rows": {}}
    log(f"augment k={k}: real only {out['real']:.3f}, real + affine {out['real+affine']:.3f}")
    for g in gans:
        smp = g.samples(shots, cfg.augment_num, steps=[steps], seed=cfg.seed)[steps]
        x = torch.cat([x_real, smp.images.flatten(0, 1)])
        y = torch.cat([y_real, torch.arange(T).repeat_interleave(cfg.augment_num)])
        row = {"real+gen": arm(x, y, False), "real+gen+affine": arm(x, y, True)}
        row["gain"] = row["real+gen+affine"] - out["real+affine"]
        row["failed_classes"] = int(smp.failed.sum())
        out["rows"][g.name] = row
        log(
            f"augment k={k} {g.name}: real + gen {row['real+gen']:.3f}, "
            f"real + gen + affine {row['real+gen+affine']:.3f} (gain {row['gain']:+.3f})"
        )
    out["test_images"] = int(x_test.shape[0])
    return out


def environment() -> dict:
    """What produced the numbers: versions, the CPU model, GPU if any, and the date."""
    import datetime
    import platform

    from metagan import __version__

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
    if isinstance(src, AffineSource):
        return {"reference": "affine", **_jsonable(dataclasses.asdict(src.jitter))}
    if isinstance(src, ShotsSource):
        return {"reference": "shots"}
    return {}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
