"""`metagan eval fit-features` and `metagan eval` end to end on real Omniglot drawings (the
subset of the small1 zip shipped in tests/data/omniglot: 5 alphabets x 6 characters x 20),
with assertions that hold whatever the numbers: real drawings score far better than noise, the
`shots` row memorises and the `affine` row does not, and adapting helps."""

import json

import pytest
import torch

from metagan.cli import main
from metagan.eval import features as F
from metagan.eval import metrics as M
from metagan.eval.classifier import embed

# A random initialisation (the `scratch` baseline) whose clipped inner steps at rate 0.01 move
# it towards each class: the measurable effect of adaptation, without minutes of meta-training.
SCRATCH = ["--algorithm", "scratch", "model.width=8", "model.z_dim=16", "inner.lr_g=0.01",
           "inner.lr_d=0.01", "inner.max_grad_norm=1.0", "run.progress=false",
           "run.sample_every=0"]  # fmt: skip
EVAL = ["--classes", "6", "--shots", "1", "3", "--steps", "6", "--num", "8", "--augment-k", "3",
        "--augment-num", "4", "--classifier-steps", "30", "--bootstrap", "5",
        "--augment-steps", "20", "30", "--mix", "0.25", "0.5", "--val-classes", "4",
        "--curve-steps", "10", "--reference", "shots", "affine", "elastic+stroke",
        "--strength", "affine=0.5,1", "--strength", "elastic=1,2", "--strength", "stroke=0.5"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from conftest import SMALL1

    assert SMALL1.is_file(), f"the shipped Omniglot subset {SMALL1} is missing"
    tmp = tmp_path_factory.mktemp("eval")
    data = ["--dataset", "omniglot", "--data-root", str(SMALL1), 'data.test_groups=["Latin"]']
    assert main(["train", *data, *SCRATCH, "--out", str(tmp / "scratch")]) == 0
    ckpt = tmp / "scratch" / "checkpoint.pt"
    feats = tmp / "features.pt"
    assert main(["eval", "fit-features", "--checkpoint", str(ckpt), "--steps", "150",
                 "--out", str(feats)]) == 0  # fmt: skip
    out = tmp / "out"
    assert main(["eval", "--features", str(feats), "--generator", f"random={ckpt}", *EVAL,
                 "--out", str(out)]) == 0  # fmt: skip
    return {"tmp": tmp, "ckpt": ckpt, "features": feats, "out": out,
            "res": json.loads((out / "results.json").read_text())}  # fmt: skip


def test_feature_extractor_learned_the_meta_train_classes_only(run):
    f = F.load(run["features"])
    assert f.dim == 64
    assert set(f.train_classes).isdisjoint(f.test_classes)
    assert all(c.startswith("Latin/") for c in f.test_classes) and len(f.test_classes) == 6
    assert f.accuracy > 3 / len(f.train_classes)  # far above chance (1/24) on held-out drawings


def test_real_drawings_score_far_better_than_noise(run):
    from metagan.eval.data import load_classes

    f = F.load(run["features"])
    classes, _ = load_classes(f, None, seed=0)
    real = torch.cat([x[3:] for x in classes.images])  # non-shot images of every test class
    a, b = embed(f.net, real[0::2]), embed(f.net, real[1::2])
    noise = torch.rand(b.shape[0], *real.shape[1:], generator=torch.Generator().manual_seed(0))
    fid_real = M.fid(a, b)
    fid_noise = M.fid(a, embed(f.net, noise * 2 - 1))
    assert fid_noise > 20 * fid_real


def test_shots_memorise_and_affine_does_not(run):
    for K in ("1", "3"):
        rows = run["res"]["shots"][K]["rows"]
        assert rows["shots"]["memorisation"] < 1e-4  # the same images, embedded in other batches
        assert 0.2 < rows["affine"]["memorisation"] < 1.5  # at the strength chosen (0.5 or 1)
        # the copies are perfectly faithful to the class as the judge sees it... as faithful
        # as the class's own drawings: the judge is trained on those, never on the shots
        assert rows["shots"]["fidelity"] >= rows["random"]["fidelity"]
    assert run["res"]["shots"]["1"]["rows"]["shots"]["diversity"] < 1e-4  # one shot, copied


def test_adapting_beats_the_unadapted_initialisation(run):
    for K in ("1", "3"):
        curve = run["res"]["shots"][K]["curves"]["random"]
        assert sorted(curve, key=int)[:7] == [str(s) for s in range(7)]
        assert curve["6"]["fid"] < 0.85 * curve["0"]["fid"]


def test_outputs_and_table(run):
    out, res = run["out"], run["res"]
    assert (out / "curves.png").stat().st_size > 1000
    table = (out / "table.md").read_text()
    assert "| shots | 0 |" in table and "| affine | 0 |" in table and "| random | 6 |" in table
    assert "| elastic+stroke | 0 |" in table
    assert "Not better than `affine`" in table and "random" in table.split("Not better")[1]
    aug = res["augment"]["3"]
    assert 0.0 <= aug["real"] <= 1.0
    assert set(aug["onthefly"]) == {"affine", "elastic+stroke"}
    # every free row is also a sample row beside the generator, at the chosen mix ratio
    assert list(aug["rows"]) == ["affine samples", "elastic+stroke samples", "random"]
    assert [r["free"] for r in aug["rows"].values()] == [True, True, False]
    ref = aug["reference"]
    assert ref["row"] == aug["choice"]["reference"]
    acc = aug["onthefly"].get(ref["row"], aug["rows"].get(ref["row"], {}).get("accuracy"))
    assert ref["accuracy"] == acc
    row = aug["rows"]["random"]
    assert row["gain"] == pytest.approx(row["accuracy"] - ref["accuracy"])
    assert aug["test_images"] == 6 * (20 - 3)
    assert len(res["classes"]) == 6 and res["steps"] == 6
    # the curves go on to step 10 (sparsely after S = 6); the rows stay at step 6
    assert sorted(map(int, res["shots"]["3"]["curves"]["random"])) == [0, 1, 2, 3, 4, 5, 6, 7, 10]
    row, curve6 = res["shots"]["3"]["rows"]["random"], res["shots"]["3"]["curves"]["random"]["6"]
    assert row["step"] == 6 and row["fid"] == curve6["fid"]
    # the main table's free rows use the strengths chosen for the protocol (k = 3 is nearest)
    chosen = aug["choice"]["strengths"]
    for K in ("1", "3"):
        assert res["shots"][K]["rows"]["elastic+stroke"]["strengths"] == {
            "elastic": chosen["elastic"], "stroke": chosen["stroke"]}  # fmt: skip
    assert "| real + elastic+stroke samples + best free on the fly |" in table
    assert "| **gain of random** (vs the reference) |" in table


def test_free_choices_are_made_on_meta_train_classes(run):
    res = run["res"]
    aug = res["augment"]["3"]
    choice = aug["choice"]
    val = choice["validation"]
    # validation classes: 4 meta-train classes, none of them a meta-test class
    f = F.load(run["features"])
    assert len(val["classes"]) == 4 and set(val["classes"]) <= set(f.train_classes)
    assert not set(val["classes"]) & set(f.test_classes)

    def best(scores, order):  # highest; ties to the earliest in order
        return max(order, key=lambda key: (scores[key], -list(order).index(key)))

    # every rule, recomputed from the raw validation accuracies in results.json
    steps = {int(n): a for n, a in val["steps"].items()}
    assert set(steps) == {20, 30} and choice["classifier_steps"] == best(steps, [20, 30])
    strength = {p: {float(s): a for s, a in v.items()} for p, v in val["strength"].items()}
    assert {p: sorted(v) for p, v in strength.items()} == {
        "affine": [0.5, 1.0], "elastic": [1.0, 2.0], "stroke": [0.5]}  # fmt: skip
    for part, v in strength.items():
        assert choice["strengths"][part] == best(v, sorted(v))
    # a one-part row's on-the-fly number is its part's at the chosen strength
    assert val["onthefly"]["affine"] == strength["affine"][choice["strengths"]["affine"]]
    assert choice["onthefly"] == best(val["onthefly"], ["affine", "elastic+stroke"])
    means = {float(m): sum(v.values()) / len(v) for m, v in val["samples"].items()}
    assert set(means) == {0.25, 0.5} and choice["mix"] == best(means, [0.25, 0.5])
    m = str(choice["mix"])
    free = val["onthefly"] | {r: a for r, a in val["samples"][m].items() if r.endswith("samples")}
    assert val["free"] == free and choice["reference"] == best(free, list(free))
    # and the meta-test arms used those choices
    assert aug["mix"] == choice["mix"] and aug["classifier_steps"] == choice["classifier_steps"]
    table = (run["out"] / "table.md").read_text()
    assert f"| {choice['onthefly']} | {choice['mix']} | {choice['classifier_steps']} |" in table


def test_combined_table_averages_evaluations(run):
    from metagan.eval.combine import combine

    res = run["res"]
    other = json.loads(json.dumps(res))
    for row in other["shots"]["3"]["rows"].values():
        row["fid"] += 2.0
    other["augment"]["3"]["real"] += 0.1
    table = combine({"a": res, "b": other})
    fid = res["shots"]["3"]["rows"]["random"]["fid"]
    # two evaluations 2 apart: mean + 1, t(1) interval 12.706 * sd(=sqrt 2) / sqrt 2
    assert f"| random | {fid + 1:.3f} ± 12.706 |" in table.split("K = 3")[1]
    fid1 = res["shots"]["1"]["rows"]["random"]["fid"]
    assert f"| random | {fid1:.3f} ± 0.000 |" in table.split("K = 3")[0]
    real = res["augment"]["3"]["real"]
    assert f"| real only | {real + 0.05:.3f} ± {12.706 * 0.05:.3f} |" in table


def test_combined_table_counts_wins_against_the_best_free_row(run):
    from metagan.eval.combine import combine

    res = run["res"]
    better = json.loads(json.dumps(res))  # in "b", the GAN beats the reference everywhere
    aug = better["augment"]["3"]
    aug["rows"]["random"]["gain"] = 0.05
    ref = aug["reference"]["row"].removesuffix(" samples")
    for K in ("1", "3"):
        rows = better["shots"][K]["rows"]
        rows["random"]["fidelity"] = rows[ref]["fidelity"] + 0.1
    table = combine({"a": res, "b": better})
    part = table.split("Against the best free row, per evaluation (of 2)")[1].strip().splitlines()
    assert part[0] == ("| row | gain > 0 (k = 3) | fidelity ≥ reference's (K = 1) | "
                       "fidelity ≥ reference's (K = 3) |")  # fmt: skip
    a = res["shots"]
    wins = [int(a[K]["rows"]["random"]["fidelity"] >= a[K]["rows"][ref]["fidelity"]) + 1
            for K in ("1", "3")]  # fmt: skip
    gains = int(res["augment"]["3"]["rows"]["random"]["gain"] > 0) + 1
    assert part[2] == f"| random | {gains} | {wins[0]} | {wins[1]} |"


def test_eval_is_reproducible(run, tmp_path):
    out = tmp_path / "again"
    assert main(["eval", "--features", str(run["features"]), "--generator",
                 f"random={run['ckpt']}", *EVAL, "--augment-k", "--out", str(out)]) == 0  # fmt: skip
    again = json.loads((out / "results.json").read_text())
    for K, entry in run["res"]["shots"].items():
        other = again["shots"][K]
        assert other["floor"] == entry["floor"]
        for row in ("shots", "random"):
            assert other["rows"][row] == entry["rows"][row]
            assert other["curves"][row] == entry["curves"][row]
        # without the protocol nothing is chosen: the free rows use the default strengths
        assert other["rows"]["elastic+stroke"]["strengths"] == {"elastic": 2.0, "stroke": 0.5}


def _one_line_error(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("metagan: error:") and match in err, err


def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path, capsys):
    out = tmp_path / "never"
    feats, ckpt = str(run["features"]), str(run["ckpt"])
    _one_line_error(capsys, ["eval", "--out", str(out)], "eval needs --features")
    _one_line_error(capsys, ["eval", "--features", ckpt, "--out", str(out)],
                    "not a metagan feature extractor")  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--generator", f"a={ckpt}",
                             "--generator", f"a={ckpt}", "--out", str(out)], "two rows are named 'a'")  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--classes", "99", "--out", str(out)],
                    "--classes 99 is out of range")  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--shots", "19", "--out", str(out)],
                    "needs at least 21")  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--reference", "affine+blur",
                             "--out", str(out)], "unknown free reference 'affine+blur'")  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--strength", "elastic=9",
                             "--out", str(out)], "elastic strength must be")  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--reference", "shots",
                             "--out", str(out)], "best free row")  # fmt: skip
    # a generator whose meta-test classes are not the extractor's
    other = tmp_path / "other"
    from conftest import SMALL1

    assert main(["train", "--dataset", "omniglot", "--data-root", str(SMALL1),
                 'data.test_groups=["Greek"]', *SCRATCH, "--out", str(other)]) == 0  # fmt: skip
    _one_line_error(capsys, ["eval", "--features", feats, "--generator",
                             str(other / "checkpoint.pt"), "--out", str(out)],
                    "other meta-test classes")  # fmt: skip
    _one_line_error(capsys, ["eval", "fit-features", "--dataset", "glyphs", "model.width=3",
                             "--out", str(out / "f.pt")], "only data.* overrides")  # fmt: skip
    assert not out.exists()


def test_adaptation_table_finds_the_first_step_that_reaches_the_baseline():
    from metagan.eval.combine import adaptation

    def curve(fids, fidelities):
        return {str(s): {"fid": f, "fidelity": q} for s, (f, q) in enumerate(zip(fids, fidelities))}

    def result(meta, base):
        return {"shots": {"5": {"curves": {"meta": meta, "ft": base}}}}

    results = {
        # meta reaches ft's final FID 40 at step 2 and its final fidelity 0.55 at step 2
        "a": result(
            curve([100, 50, 30, 20], [0.1, 0.5, 0.6, 0.7]),
            curve([90, 70, 50, 40], [0.2, 0.3, 0.4, 0.55]),
        ),  # fmt: skip
        # meta never gets below ft's final FID 10; fidelity already at step 0
        "b": result(
            curve([100, 50, 30, 20], [0.9, 0.5, 0.6, 0.7]),
            curve([90, 70, 50, 10], [0.2, 0.3, 0.4, 0.55]),
        ),  # fmt: skip
    }
    lines = adaptation(results, "meta", "ft")
    assert "| a | 40.000 | 2 | 0.550 | 2 |" in lines
    assert "| b | 10.000 | never | 0.550 | 0 |" in lines
    # the mean curve: step 3 of meta's FID is 20 in both evaluations
    row = next(ln for ln in lines if ln.startswith("| meta | fid |"))
    assert row.split(" | ")[-1].startswith("20.000 ± 0.000")
