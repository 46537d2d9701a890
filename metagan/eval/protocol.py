"""The augmentation protocol (DAGAN/F2GAN, with the free arms they lack): k real images per
class, one classifier per arm; the mix ratio, classifier steps, free strengths and the
reference (the best free row) chosen on meta-train validation classes
(:func:`choose_protocol`), then applied to the meta-test classes (:func:`augmentation`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metagan.eval import free
from metagan.eval.classifier import FitConfig, accuracy, fit_set
from metagan.eval.data import ClassData, EvalConfig
from metagan.eval.sources import FreeSource, Source
from metagan.fewshot import MixedFewShotDataset
from metagan.transforms import Jitter


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
