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
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metagan import config
from metagan.errors import ConfigError, DataError
from metagan.eval import free
from metagan.eval import metrics as M
from metagan.eval.classifier import FitConfig, accuracy, embed, fit, fit_set, predict
from metagan.eval.features import Features
from metagan.eval.sources import CheckpointSource, FreeSource, ShotsSource, Source
from metagan.fewshot import MixedFewShotDataset, check_mix
from metagan.transforms import Jitter


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    shots: tuple[int, ...] = (1, 5)  # K values of the main table
    steps: int | None = None  # adaptation steps S; None: the checkpoints' common inner.steps
    # the adaptation curves go on to this step (sparsely after S); None: S. The table's rows
    # and the augmentation protocol use step S.
    curve_steps: int | None = None
    num: int = 32  # samples per class
    augment_k: tuple[int, ...] = (1, 5)  # real images per class in the augmentation protocol
    augment_num: int = 64  # generated images per class there (512 in the F2GAN protocol)
    # Candidate mix ratios (share of each classifier batch drawn from generated images),
    # classifier steps of the augmentation arms and strengths of each free part; one of each
    # is chosen on validation classes from the meta-train side (never the meta-test classes).
    augment_mix: tuple[float, ...] = (0.1, 0.25, 0.5)
    augment_steps: tuple[int, ...] = (200, 400)
    strengths: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(free.CANDIDATES))
    val_classes: int = 20  # meta-train classes the choice is made on
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
        if self.curve_steps is not None and (self.curve_steps < 0 or self.curve_steps > 1000):
            raise ConfigError(f"curve_steps must be in 0..1000, got {self.curve_steps}")
        if not self.augment_mix or not self.augment_steps:
            raise ConfigError("augment_mix and augment_steps need at least one candidate each")
        for r in self.augment_mix:
            check_mix(r)
        for v in (*self.augment_steps, self.val_classes):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ConfigError(f"augment_steps and val_classes must be integers >= 2, got {v!r}")
        free.check_candidates(self.strengths)


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
    if not test:
        raise ConfigError(
            "the data config holds out no meta-test classes (data.test_fraction = 0): there is "
            "nothing unseen to evaluate on; fit features on a split with meta-test classes"
        )
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
        chosen = _pick(chosen, limit, seed)
    return _class_data(s, chosen, seed), s


def curve_points(steps: int, curve_steps: int | None) -> list[int]:
    """The adaptation steps a curve is scored at: every step up to S, then (up to
    ``curve_steps``) a few more, since each point adapts afresh from the initialisation."""
    last = steps if curve_steps is None else max(steps, curve_steps)
    extra = {s for s in (7, 10, 15, 20, 30, 50, 100) if steps < s < last}
    return sorted({*range(steps + 1), *extra, last})


def validation_classes(session, count: int, seed: int) -> ClassData:
    """``count`` seeded meta-train classes (all of them when there are fewer): where the
    augmentation protocol's mix ratio and classifier steps are chosen, so that no choice is
    made on the meta-test classes a table reports."""
    train = list(session.split[0])
    return _class_data(session, _pick(train, min(count, len(train)), seed + 1), seed)


def _pick(indices: list[int], n: int, seed: int) -> list[int]:
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))
    return [indices[j] for j in sorted(order[:n].tolist())]


def _class_data(session, chosen: list[int], seed: int) -> ClassData:
    names = [c.name for c in session.dataset.classes]
    images = []
    for i in chosen:
        x = session.cache.get(i)
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed * 7919 + i))
        images.append(x[perm])
    return ClassData([names[i] for i in chosen], images)


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
    bg = free.background_of(bool(features.data["invert"]))
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


def _strengths_for(K: int, choices: dict) -> dict[str, float]:
    """The free strengths the main table uses at K shots: those chosen for the protocol's k
    nearest K (ties: the smaller k), or the defaults when there is no protocol."""
    if not choices:
        return dict(free.DEFAULT)
    k = min(choices, key=lambda k: (abs(k - K), k))
    return choices[k]["strengths"]


@dataclass
class _Protocol:
    """One augmentation protocol's data: k real images per class, the rest to test on, and
    each sample row's generated images (made from the same k shots)."""

    x_real: Tensor  # (T * k, C, H, W)
    y_real: Tensor  # (T * k,)
    x_test: Tensor
    y_test: Tensor
    shots: Tensor  # (T, k, C, H, W)
    generated: dict[str, tuple[Tensor, Tensor, int]] = field(default_factory=dict)

    @classmethod
    def make(cls, classes: ClassData, k: int):
        shots, rest = classes.split(k)  # (T, k, C, H, W); per class the test images
        T = shots.shape[0]
        return cls(
            shots.flatten(0, 1), torch.arange(T).repeat_interleave(k), torch.cat(rest),
            torch.cat([torch.full((x.shape[0],), c) for c, x in enumerate(rest)]), shots,
        )  # fmt: skip

    def generate(self, rows: list[Source], steps: int, num: int, seed: int, *, suffix: str = ""):
        """Add ``num`` samples per class of every row (adapted from the k shots), named
        ``row.name + suffix``."""
        T = self.shots.shape[0]
        for g in rows:
            smp = g.samples(self.shots, num, steps=[steps], seed=seed)
            smp = smp[steps] if steps in smp else smp[0]  # reference rows do not adapt
            labels = torch.arange(T).repeat_interleave(num)
            self.generated[g.name + suffix] = (
                smp.images.flatten(0, 1),
                labels,
                int(smp.failed.sum()),
            )

    def accuracy(self, row: str | None, mix: float, fc: FitConfig, jitter: Jitter | None) -> float:
        """Test accuracy of one classifier: real images (plus ``row``'s generated ones at
        ``mix``), trained with ``jitter`` applied to every batch when given."""
        x_gen, y_gen = self.generated[row][:2] if row is not None else (None, None)
        data = MixedFewShotDataset(self.x_real, self.y_real, x_gen, y_gen,
                                   mix=mix if row is not None else 0.0)  # fmt: skip
        net = fit_set(data, int(self.y_real.max()) + 1, fc, augment=jitter)
        return accuracy(net, self.x_test, self.y_test)


SAMPLES = " samples"  # a free row used as a generator: "affine samples"


def _best(scores: dict, order) -> object:
    """The key with the highest score; ties go to the first in ``order``."""
    order = list(order)
    return max(order, key=lambda key: (scores[key], -order.index(key)))


def choose_protocol(
    val: ClassData,
    free_rows: list[FreeSource],
    gans: list[Source],
    k: int,
    steps: int,
    cfg: EvalConfig,
    background: float,
    *,
    log=print,
) -> dict:
    """Every choice of the protocol, made on validation (meta-train) classes, in this order:

    1. the classifier's steps: best real + (first free row at its default strengths);
    2. each free part's strength: best real + that part alone on the fly;
    3. the on-the-fly free transform every sample row is trained with: the free row (at the
       chosen strengths) with the best real + row on the fly;
    4. the mix ratio: best mean over every sample row (free rows as samples, generators) of
       real + samples + that on-the-fly transform;
    5. the reference: the best free row on validation, on the fly or as samples.

    Ties go to fewer steps, the smaller strength, the earlier row and the smaller ratio."""
    p = _Protocol.make(val, k)
    fc = dataclasses.replace(cfg.classifier, seed=cfg.seed)
    first = free_rows[0]
    candidates = sorted(cfg.augment_steps)
    if len(candidates) == 1:  # nothing to choose: no classifier to train
        by_steps, best_steps = {}, candidates[0]
    else:
        by_steps = {n: p.accuracy(None, 0.0, dataclasses.replace(fc, steps=n), first.jitter)
                    for n in candidates}  # fmt: skip
        best_steps = _best(by_steps, candidates)
    fc = dataclasses.replace(fc, steps=best_steps)
    parts = list(dict.fromkeys(part for row in free_rows for part in row.parts))
    by_strength = {}
    for part in parts:
        cands = sorted(cfg.strengths[part])
        by_strength[part] = {
            s: p.accuracy(None, 0.0, fc, Jitter(**{part: s}, background=background)) for s in cands
        }
    strengths = dict(free.DEFAULT) | {part: _best(v, sorted(v)) for part, v in by_strength.items()}
    rows = [r.at(strengths) for r in free_rows]
    onthefly = {}
    for r in rows:  # a single part at its chosen strength was measured in step 2
        onthefly[r.name] = (by_strength[r.parts[0]][strengths[r.parts[0]]]
                            if len(r.parts) == 1 else p.accuracy(None, 0.0, fc, r.jitter))  # fmt: skip
    fly = _best(onthefly, [r.name for r in rows])
    fly_jitter = next(r.jitter for r in rows if r.name == fly)
    p.generate(rows, steps, cfg.augment_num, cfg.seed, suffix=SAMPLES)
    p.generate(gans, steps, cfg.augment_num, cfg.seed)
    by_mix = {m: {name: p.accuracy(name, m, fc, fly_jitter) for name in p.generated}
              for m in sorted(cfg.augment_mix)}  # fmt: skip
    mean = {m: sum(v.values()) / len(v) for m, v in by_mix.items()}
    best_mix = _best(mean, sorted(mean))
    free_scores = onthefly | {r.name + SAMPLES: by_mix[best_mix][r.name + SAMPLES] for r in rows}
    reference = _best(free_scores, free_scores)
    log(
        f"augment k={k}: on {len(val.names)} validation classes (meta-train side) chose "
        f"{best_steps} classifier steps, strengths {strengths}, {fly} on the fly "
        f"({onthefly[fly]:.3f}), mix ratio {best_mix}; best free row {reference} "
        f"({free_scores[reference]:.3f})"
    )
    return {
        "classifier_steps": best_steps,
        "strengths": strengths,
        "onthefly": fly,
        "mix": best_mix,
        "reference": reference,
        "validation": {
            "classes": val.names,
            "steps": by_steps,
            "strength": by_strength,
            "onthefly": onthefly,
            "samples": by_mix,
            "free": free_scores,
        },
    }


def augmentation(
    classes: ClassData,
    free_rows: list[FreeSource],
    gans: list[Source],
    k: int,
    steps: int,
    cfg: EvalConfig,
    background: float,
    choice: dict,
    *,
    log=print,
) -> dict:
    """The protocol on the meta-test classes with k real images per class, at the choices made
    on validation: real only; every free row on the fly; every sample row (free rows as
    samples, generators) drawn at the mix ratio, trained with the chosen on-the-fly transform.
    Each row's gain is over the reference (the best free row on validation)."""
    p = _Protocol.make(classes, k)
    fc = dataclasses.replace(cfg.classifier, seed=cfg.seed, steps=choice["classifier_steps"])
    rows = [r.at(choice["strengths"]) for r in free_rows]
    fly_jitter = next(r.jitter for r in rows if r.name == choice["onthefly"])
    out = {"real": p.accuracy(None, 0.0, fc, None), "onthefly": {}, "rows": {}}
    for r in rows:
        out["onthefly"][r.name] = p.accuracy(None, 0.0, fc, r.jitter)
    log(f"augment k={k}: real only {out['real']:.3f}, on the fly {out['onthefly']}")
    p.generate(rows, steps, cfg.augment_num, cfg.seed, suffix=SAMPLES)
    p.generate(gans, steps, cfg.augment_num, cfg.seed)
    for name, (_, _, failed) in p.generated.items():
        out["rows"][name] = {"accuracy": p.accuracy(name, choice["mix"], fc, fly_jitter),
                             "free": name.endswith(SAMPLES), "failed_classes": failed}  # fmt: skip
    ref = choice["reference"]
    ref_acc = out["onthefly"][ref] if ref in out["onthefly"] else out["rows"][ref]["accuracy"]
    out["reference"] = {"row": ref, "accuracy": ref_acc}
    for name, row in out["rows"].items():
        row["gain"] = row["accuracy"] - ref_acc
        log(f"augment k={k} {name}: {row['accuracy']:.3f} (gain over {ref} {row['gain']:+.3f})")
    out |= {"mix": choice["mix"], "classifier_steps": choice["classifier_steps"],
            "test_images": int(p.x_test.shape[0])}  # fmt: skip
    return out


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
    return {}


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
