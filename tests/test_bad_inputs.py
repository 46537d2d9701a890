"""Every bad input is one line on stderr, exit code 2, no traceback, and nothing written.

CASES is a table of bad command lines. Each runs in-process through ``metagan.cli.main``
(stderr captured), and must: return 2; print exactly one line that starts with ``metagan``
and names the problem (the fragment in the table); print no traceback; leave every file of
the test's folder as it was and create no output folder. A few run as real subprocesses to
prove the exit code and the absence of a traceback end to end. Placeholders in the table:
``{ckpt}`` a good tiny checkpoint (step 3 of 3), ``{out}`` a fresh output path, ``{file}`` a
plain file, the other checkpoints and folders are made by the ``env`` fixture.
"""

import contextlib
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli_env
from PIL import Image

from metagan import checkpoint, plugins, pretrained, rundir
from metagan.cli import main
from metagan.models import GanPair

TINY = ["--dataset", "glyphs", "--iterations", "3", "model.width=8", "model.z_dim=16", "meta.tasks=2",
        "inner.steps=1", "data.shots=2", "data.queries=2", "run.progress=false", "run.log_every=1",
        "run.sample_every=0", "run.sample_classes=2", "run.sample_num=2"]  # fmt: skip
TRAIN = ["train", *TINY, "--out", "{out}"]
ADAPT = ["adapt", "--checkpoint", "{ckpt}", "--out", "{out}"]
UNSEEN = [*ADAPT, "--unseen", "2"]
SAMPLE = ["sample", "--checkpoint", "{ckpt}", "--out", "{out}"]
FIT = ["eval", "fit-features", "--checkpoint", "{ckpt}", "--steps", "1"]
HUGE = "needs at least"  # a size refused before allocating, with its estimate

CASES = [  # (id, argv, a fragment the one line must contain)
    # -- train: names, numbers out of range, non-finite rates --------------------------------
    ("algorithm", [*TRAIN, "--algorithm", "reptlie"], "did you mean reptile?"),
    ("arch", [*TRAIN, "--arch", "dcgna"], "did you mean dcgan?"),
    ("dataset", [*TRAIN, "--dataset", "glyph"], "did you mean glyphs?"),
    ("loss", [*TRAIN, "model.loss=hinj"], "unknown loss 'hinj'"),
    ("steps-neg", [*TRAIN, "inner.steps=-2"], "inner.steps must be >= 0"),
    ("steps-huge", [*TRAIN, "inner.steps=1000000"], "inner.steps must be an integer in [0, 10000]"),
    ("lr-d-neg", [*TRAIN, "inner.lr_d=-0.1"], "inner.lr_d must be a positive learning rate"),
    ("lr-g-inf", [*TRAIN, "inner.lr_g=inf"], "inner.lr_g must be a rate in (0, 100]"),
    ("lr-g-nan", [*TRAIN, "inner.lr_g=nan"], "inner.lr_g"),
    ("meta-lr-0", [*TRAIN, "meta.lr=0"], "meta.lr must be a positive learning rate"),
    ("meta-lr-inf", [*TRAIN, "meta.lr=inf"], "meta.lr must be a learning rate in (0, 1]"),
    ("meta-lr-1e30", [*TRAIN, "meta.lr=1e30"], "meta.lr must be a learning rate in (0, 1]"),
    ("meta-lr-nan", [*TRAIN, "meta.lr=nan"], "meta.lr"),
    ("momentum-neg", [*TRAIN, "inner.momentum=-0.5"], "inner.momentum must be in [0, 0.999]"),
    ("momentum-1.5", [*TRAIN, "inner.momentum=1.5"], "inner.momentum must be in [0, 0.999]"),
    ("weight-decay", [*TRAIN, "inner.weight_decay=-1"], "inner.weight_decay must be >= 0"),
    ("clip-inf", [*TRAIN, "inner.max_grad_norm=inf"], "inner.max_grad_norm must be in [0, 1000000]"),
    ("r1-nan", [*TRAIN, "inner.r1_gamma=nan"], "inner.r1_gamma"),
    ("mode-seeking-inf", [*TRAIN, "inner.mode_seeking=inf"], "inner.mode_seeking"),
    ("method", [*TRAIN, "inner.method=rmsprop"], "inner.method must be one of sgd, momentum, adam"),
    ("betas-1", [*TRAIN, "meta.betas=[0.5, 1.0]"], "meta.betas must be two numbers in [0, 1)"),
    ("betas-one", [*TRAIN, "meta.betas=[0.5]"], "meta.betas must be two numbers"),
    ("tasks-0", [*TRAIN, "meta.tasks=0"], "meta.tasks must be a positive integer"),
    ("tasks-absurd", [*TRAIN, "meta.tasks=10000000"], "meta.tasks must be an integer in [1, 100000]"),
    ("iterations-absurd", [*TRAIN, "--iterations", "100000000000"], "--iterations must be at most"),
    ("iterations-absurd-key", ["train", "--out", "{out}", "meta.iterations=100000000000"], "meta.iterations must be an integer"),
    ("iterations-flag-0", [*TRAIN, "--iterations", "0"], "--iterations must be a positive integer"),
    ("iterations-flag-word", [*TRAIN, "--iterations", "many"], "--iterations must be a positive integer"),
    ("max-skips-0", [*TRAIN, "meta.max_skips=0"], "meta.max_skips must be a positive integer"),
    ("shots-0", [*TRAIN, "data.shots=0"], "data.shots must be a positive integer"),
    ("shots-absurd", [*TRAIN, "data.shots=20000"], "data.shots must be an integer in [1, 10000]"),
    ("queries-neg", [*TRAIN, "data.queries=-1"], "data.queries must be >= 0"),
    ("test-fraction", [*TRAIN, "data.test_fraction=1.5"], "data.test_fraction must be in [0, 1)"),
    ("image-size", [*TRAIN, "data.image_size=30"], "data.image_size must be one of 28, 32, 64"),
    ("width-0", [*TRAIN, "model.width=0"], "model.width must be a positive integer"),
    ("width-absurd", [*TRAIN, "model.width=1000000"], "model.width must be an integer in [1, 65536]"),
    ("z-dim-absurd", [*TRAIN, "model.z_dim=10000000"], "model.z_dim must be an integer in [1, 65536]"),
    ("fake-batch-absurd", [*TRAIN, "inner.fake_batch=1000000"], "inner.fake_batch must be an integer"),
    ("seed-neg", [*TRAIN, "run.seed=-1"], "run.seed must be an integer in [0, "),
    ("seed-beyond-64-bits", [*TRAIN, "--seed", "99999999999999999999999"], "--seed must be at most"),
    ("data-seed-beyond-64-bits", [*TRAIN, "data.seed=99999999999999999999"], "data.seed must be an integer"),
    ("sample-num-0", [*TRAIN, "run.sample_num=0"], "run.sample_num must be a positive integer"),
    ("engine", [*TRAIN, "run.engine=fast"], "run.engine must be 'batched' or 'sequential'"),
    ("cuda-graph-on-cpu", [*TRAIN, "run.cuda_graph=true"], "run.cuda_graph replays the batched engine"),
    ("device", [*TRAIN, "--device", "banana"], "is not a device"),
    ("key-typo", [*TRAIN, "inner.stepz=1"], "did you mean inner.steps?"),
    ("section-typo", [*TRAIN, "innr.steps=1"], "did you mean [inner]?"),
    ("override-no-value", [*TRAIN, "inner.steps"], "unrecognized arguments: inner.steps"),
    ("wrong-type", [*TRAIN, "meta.tasks=eight"], "config key meta.tasks must be int"),
    ("unknown-flag", [*TRAIN, "--turbo"], "unrecognized arguments: --turbo"),
    # -- sizes that cannot fit: refused with an estimate before allocating ---------------------
    ("width-too-big", [*TRAIN, "model.width=65536"], HUGE),
    ("z-dim-too-big", [*TRAIN, "model.z_dim=65536", "model.width=512", "meta.tasks=100000"], HUGE),
    ("tasks-too-many", [*TRAIN, "meta.tasks=100000", "model.width=1024"], HUGE),
    ("fake-batch-too-big", [*TRAIN, "inner.fake_batch=100000", "meta.tasks=100000"], HUGE),
    # -- config files --------------------------------------------------------------------------
    ("config-missing", [*TRAIN, "--config", "{root}/missing.toml"], "cannot read config file"),
    ("config-not-utf8", [*TRAIN, "--config", "{latin1_toml}"], "is not UTF-8 text"),
    ("config-not-toml", [*TRAIN, "--config", "{bad_toml}"], "is not valid TOML"),
    ("config-not-section", [*TRAIN, "--config", "{flat_toml}"], "must be a [section]"),
    ("config-a-folder", [*TRAIN, "--config", "{imgs}"], "cannot read config file"),
    # -- output paths ------------------------------------------------------------------------
    ("train-out-file", ["train", *TINY, "--out", "{file}"], "exists and is not a folder"),
    ("train-out-under-file", ["train", *TINY, "--out", "{file}/run"], "which is a file, not a folder"),
    ("train-out-proc", ["train", *TINY, "--out", "/proc/metagan-run"], "cannot be written"),
    ("train-out-proc-self", ["train", *TINY, "--out", "/proc/self/metagan-run"], "cannot be written"),
    ("train-out-not-utf8", ["train", *TINY, "--out", "{out}\udcff"], "is not valid UTF-8"),
    ("adapt-out-file", [*UNSEEN[:-4], "--out", "{file}", "--unseen", "2"], "exists and is not a folder"),
    ("adapt-out-under-file", ["adapt", "--checkpoint", "{ckpt}", "--unseen", "2", "--out", "{file}/x"], "which is a file"),
    ("adapt-out-proc", ["adapt", "--checkpoint", "{ckpt}", "--unseen", "2", "--out", "/proc/x"], "cannot be written"),
    ("adapt-images-out-proc", ["adapt", "--checkpoint", "{ckpt}", "--images", "{imgs}", "--out", "/proc/x"], "cannot be written"),
    ("sample-out-file", ["sample", "--checkpoint", "{ckpt}", "--out", "{file}"], "exists and is not a folder"),
    ("sample-out-under-file", ["sample", "--checkpoint", "{ckpt}", "--out", "{file}/x"], "which is a file"),
    ("sample-out-proc", ["sample", "--checkpoint", "{ckpt}", "--out", "/proc/x"], "cannot be written"),
    ("eval-out-file", ["eval", "--features", "{root}/f.pt", "--out", "{file}"], "exists and is not a folder"),
    ("eval-out-proc", ["eval", "--features", "{root}/f.pt", "--out", "/proc/x"], "cannot be written"),
    ("fit-out-under-file", [*FIT, "--out", "{file}/f.pt"], "which is a file, not a folder"),
    ("fit-out-proc", [*FIT, "--out", "/proc/f.pt"], "cannot be written"),
    ("fit-out-folder", [*FIT, "--out", "{imgs}"], "is a folder; give a file path"),
    ("download-root-file", ["data", "download", "omniglot", "--root", "{file}"], "exists and is not a folder"),
    ("download-root-proc", ["data", "download", "omniglot", "--root", "/proc/x"], "cannot be written"),
    # -- data --------------------------------------------------------------------------------
    ("data-root-device-omniglot", [*TRAIN, "--dataset", "omniglot", "--data-root", "/dev/null"], "neither a file nor a folder"),
    ("data-root-file-omniglot", [*TRAIN, "--dataset", "omniglot", "--data-root", "{file}"], "is not a zip file"),
    ("data-root-missing-omniglot", [*TRAIN, "--dataset", "omniglot", "--data-root", "{root}/nope.zip"], "does not exist"),
    ("data-root-device-folder", [*TRAIN, "--dataset", "folder", "--data-root", "/dev/null"], "is not a folder"),
    ("data-root-file-folder", [*TRAIN, "--dataset", "folder", "--data-root", "{file}"], "is not a folder"),
    ("data-root-for-glyphs", [*TRAIN, "--data-root", "{imgs}"], "reads no files"),
    ("images-a-file", [*ADAPT, "--images", "{file}"], "is not a folder"),
    ("images-missing", [*ADAPT, "--images", "{root}/none"], "does not exist"),
    ("images-empty", [*ADAPT, "--images", "{empty}"], "no images in"),
    ("images-bomb", [*ADAPT, "--images", "{bomb}"], "decompression bomb"),
    ("images-too-few", [*ADAPT, "--images", "{imgs}", "--shots", "9"], "holds 4 images but --shots is 9"),
    ("images-not-image", [*ADAPT, "--images", "{junk}"], "cannot read image"),
    ("class-unknown", [*ADAPT, "--class", "alphabet00/charr"], "unknown class"),
    # -- adapt / sample / eval arguments ------------------------------------------------------
    ("adapt-unseen-0", [*ADAPT, "--unseen", "0"], "--unseen must be a positive integer"),
    ("adapt-num-0", [*UNSEEN, "--num", "0"], "--num must be a positive integer"),
    ("adapt-num-absurd", [*UNSEEN, "--num", "100000000"], "--num must be at most"),
    ("adapt-num-too-big", ["adapt", "--checkpoint", "{wide}", "--unseen", "2", "--num", "1000000", "--out", "{out}"], HUGE),
    ("adapt-steps-0", [*UNSEEN, "--steps", "0"], "--steps must be a positive integer"),
    ("adapt-shots-0", [*UNSEEN, "--shots", "0"], "--shots must be a positive integer"),
    ("adapt-seed-neg", [*UNSEEN, "--seed", "-1"], "--seed must be an integer >= 0"),
    ("adapt-two-sources", [*UNSEEN, "--images", "{imgs}"], "not allowed with argument"),
    ("adapt-no-out", ["adapt", "--checkpoint", "{ckpt}", "--unseen", "2"], "the following arguments are required: --out"),
    ("adapt-model-override", [*UNSEEN, "model.arch=mlp"], "adapt takes only inner.* overrides"),
    ("adapt-inner-lr-inf", [*UNSEEN, "inner.lr_g=inf"], "inner.lr_g must be a rate"),
    ("sample-num-neg", [*SAMPLE, "--num", "-3"], "--num must be a positive integer"),
    ("sample-seed-65-bits", [*SAMPLE, "--seed", str(2**64)], "--seed must be at most"),
    ("sample-images-unconditional", [*SAMPLE, "--images", "{imgs}"], "is not conditional"),
    ("sample-num-too-big", ["sample", "--checkpoint", "{wide}", "--num", "1000000", "--out", "{out}"], HUGE),
    ("eval-no-features", ["eval", "--out", "{out}"], "eval needs --features"),
    ("eval-features-missing", ["eval", "--features", "{root}/f.pt", "--out", "{out}"], "does not exist"),
    ("eval-features-a-checkpoint", ["eval", "--features", "{ckpt}", "--out", "{out}"], "feature extractor"),
    ("eval-steps-neg", ["eval", "--features", "{root}/f.pt", "--steps", "-1", "--out", "{out}"], "--steps must be an integer >= 0"),
    ("fit-both-sources", [*FIT, "--config", "{flat_toml}", "--out", "{out}/f.pt"], "give --checkpoint or --config, not both"),
    ("fit-model-override", [*FIT, "model.width=8", "--out", "{out}/f.pt"], "fit-features takes only data.* overrides"),
    ("download-unknown", ["data", "download", "mnist", "--root", "{out}"], "unknown dataset 'mnist'"),
    ("download-nothing", ["data", "download", "glyphs", "--root", "{out}"], "has nothing to download"),
    # -- checkpoints ---------------------------------------------------------------------------
    ("ckpt-missing", [*UNSEEN[:2], "{root}/none.pt", *UNSEEN[3:]], "does not exist"),
    ("ckpt-corrupt", [*UNSEEN[:2], "{corrupt}", *UNSEEN[3:]], "is corrupt"),
    ("ckpt-foreign", [*UNSEEN[:2], "{foreign}", *UNSEEN[3:]], "is not a metagan checkpoint"),
    ("ckpt-no-params", [*UNSEEN[:2], "{no_params}", *UNSEEN[3:]], "it has no 'params' entry"),
    ("ckpt-params-missing-g", [*UNSEEN[:2], "{no_g}", *UNSEEN[3:]], "parameters 'g' have shape None"),
    ("ckpt-non-finite-adapt", [*UNSEEN[:2], "{nan}", *UNSEEN[3:]], "are not finite"),
    ("ckpt-non-finite-sample", ["sample", "--checkpoint", "{nan}", "--out", "{out}"], "are not finite"),
    ("ckpt-non-finite-resume", ["train", "--resume", "{nan}", "--iterations", "5"], "are not finite"),
    ("ckpt-non-finite-optimizer", ["train", "--resume", "{nan_opt}", "--iterations", "5"], "optimizer state are not finite"),
    ("ckpt-unsafe-adapt", [*UNSEEN[:2], "{evil}", *UNSEEN[3:]], "loading it could run code"),
    ("ckpt-unsafe-resume", ["train", "--resume", "{evil}"], "loading it could run code"),
    ("ckpt-unsafe-exec-sample", ["sample", "--checkpoint", "{evil_exec}", "--out", "{out}"], "(exec) beyond tensors"),
    ("ckpt-unsafe-popen-in-params", [*UNSEEN[:2], "{evil_popen}", *UNSEEN[3:]], "Popen) beyond tensors"),
    ("ckpt-unsafe-fit-features", ["eval", "fit-features", "--checkpoint", "{evil}", "--out", "{out}/f.pt"], "could run code"),
    ("ckpt-unsafe-eval", ["eval", "--features", "{evil}", "--out", "{out}"], "loading it could run code"),
    ("resume-no-rng", ["train", "--resume", "{no_rng}", "--iterations", "5"], "cannot be resumed"),
    ("resume-other-arch", ["train", "--resume", "{ckpt}", "--arch", "mlp", "--iterations", "5"], "architecture 'dcgan', not 'mlp'"),
    ("resume-nothing-to-do", ["train", "--resume", "{ckpt}"], "nothing to do"),
    ("resume-fewer-iterations", ["train", "--resume", "{ckpt}", "--iterations", "2"], "nothing to do"),
    ("resume-at-the-largest-step", ["train", "--resume", "{at_max}", "--out", "{out}"], "that is the largest meta.iterations (1000000000)"),
    ("resume-optimizer-wrong-shape", ["train", "--resume", "{bad_opt}", "--iterations", "5", "--out", "{out}"], "optimizer state 'exp_avg' of parameters 'd' has shape (7,)"),
    ("ckpt-model-a-string", [*UNSEEN[:2], "{model_str}", *UNSEEN[3:]], "its config['model'] is a str, not a table"),
    ("ckpt-model-a-string-resume", ["train", "--resume", "{model_str}", "--iterations", "5", "--out", "{out}"], "config['model'] is a str"),
    # -- integrity: a digest of every tensor, checked at every load --------------------------
    ("ckpt-bits-flipped-adapt", [*UNSEEN[:2], "{flipped}", *UNSEEN[3:]], "is corrupt: tensor 'params/g' differs from the digest"),
    ("ckpt-bits-flipped-sample", ["sample", "--checkpoint", "{flipped}", "--out", "{out}"], "tensor 'params/g' differs from the digest"),
    ("ckpt-bits-flipped-resume", ["train", "--resume", "{flipped}", "--iterations", "5", "--out", "{out}"], "tensor 'params/g' differs"),
    ("ckpt-bits-flipped-fit", [*FIT[:3], "{flipped}", "--out", "{out}/f.pt"], "tensor 'params/g' differs"),
    ("ckpt-bits-flipped-shipped", ["sample", "--checkpoint", "{shipped_flipped}", "--out", "{out}"], "tensor 'params/g' differs from the digest"),
    ("ckpt-int64", ["sample", "--checkpoint", "{int64}", "--out", "{out}"], "tensor 'params/d' is int64 of shape"),
    ("ckpt-int64-no-digest", [*UNSEEN[:2], "{int64_bare}", *UNSEEN[3:]], "parameters 'g' are int64, but architecture 'dcgan' needs float32"),
    ("ckpt-step-edited", ["train", "--resume", "{step_edited}", "--iterations", "5", "--out", "{out}"], "its config, step or other data differ"),
    # -- a run folder belongs to one run --------------------------------------------------------
    ("train-out-holds-a-run", ["train", *TINY, "--out", "{run}"], "already holds a run (checkpoint.pt, config.toml, metrics.jsonl); continue it with --resume"),
    ("train-out-holds-a-run-no-checkpoint", ["train", *TINY, "--out", "{half_run}"], "already holds a run (config.toml, metrics.jsonl); start afresh there with --overwrite"),
    ("resume-into-another-run", ["train", "--resume", "{ckpt}", "--iterations", "5", "--out", "{half_run}"], "holds another run (config.toml, metrics.jsonl), and --resume continues"),
    ("train-out-in-use", ["train", *TINY, "--out", "{busy}"], "is in use by another metagan run (pid"),
    ("train-out-in-use-overwrite", ["train", *TINY, "--out", "{busy}", "--overwrite"], "is in use by another metagan run"),
    ("train-out-dangling-symlink", ["train", *TINY, "--out", "{dangling}"], "is a symbolic link to"),
    ("train-out-under-dangling-symlink", ["train", *TINY, "--out", "{dangling}/run"], "which does not exist"),
    ("train-out-1-mb", ["train", *TINY, "--out", "r" * 1_000_000], "File name too long"),  # the
    ("train-out-1-mb-key", ["train", *TINY, "run.out=" + "r" * 1_000_000], "characters]"),  # issue's 10 MB, smaller
    ("train-out-empty", ["train", *TINY, 'run.out=""'], "run.out is empty"),
    ("train-out-lock-a-folder", ["train", *TINY, "--out", "{lock_a_folder}"], "cannot be used: Is a directory"),
    ("ckpt-path-10k", ["adapt", "--checkpoint", "c" * 10_000, "--unseen", "2", "--out", "{out}"], "cannot be read: File name too long"),
    ("resume-path-10k", ["train", "--resume", "c" * 10_000], "cannot be read: File name too long"),
    ("ckpt-float64-no-digest", ["sample", "--checkpoint", "{float64}", "--out", "{out}"], "parameters 'g' are float64"),
    ("adapt-out-dangling-symlink", [*UNSEEN[:4], "{dangling}", "--unseen", "2"], "is a symbolic link to"),
    # -- images: too small, too large ------------------------------------------------------------
    ("images-1x1", [*ADAPT, "--images", "{dots}"], "is 1x1 pixels, too small to hold a drawing; images must be at least 8x8"),
    ("train-folder-1x1", [*TRAIN, "--dataset", "folder", "--data-root", "{dot_classes}"], "is 1x1 pixels"),
    ("images-bomb-says-how", [*ADAPT, "--images", "{bomb}"], "allow it with METAGAN_MAX_IMAGE_PIXELS=N"),
    ("config-nested-deep", [*TRAIN, "--config", "{deep_toml}"], "nests arrays or tables too deeply"),
    ("override-nested-deep", [*TRAIN, "inner.steps=" + "[" * 100_000 + "]" * 100_000], "nests arrays or tables too deeply"),
    # -- plugins and the command itself -------------------------------------------------------
    ("disable-unknown-plugin", ["--disable-plugin", "nosuch", *TRAIN], "cannot disable unknown plugin"),
    ("disable-essential-plugin", ["--disable-plugin", "losses", *TRAIN], "is essential"),
    ("no-command", [], "the following arguments are required"),
    ("unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'"),
]  # fmt: skip


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root``: its kind, size and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()  # a dangling link counts as itself
        # a folder counts by its entries (probing whether it is writable touches its mtime)
        out[str(p.relative_to(root))] = (True,) if p.is_dir() else (st.st_size, st.st_mtime_ns)
    return out


def write_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.new("L", (40, 40), 255)
        img.paste(0, (5 + i, 5, 15 + i, 30))
        img.save(folder / f"img{i}.png")
    return folder


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit gray pixels (a tiny file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (width + 1))  # one row; the header is what matters
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class _Evil:
    """Pickles to a call that would create a marker file if the checkpoint were ever loaded."""

    def __init__(self, marker: Path, how: str = "system"):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "exec":
            return (exec, (f"open({str(self.marker)!r}, 'w').close()",))
        if self.how == "popen":
            return (subprocess.Popen, (["touch", str(self.marker)],))
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    assert main(["train", *TINY, "--algorithm", "reptile", "--out", str(root / "run")]) == 0
    ckpt = root / "run" / "checkpoint.pt"
    good = torch.load(ckpt, weights_only=True)
    paths = {"root": root, "ckpt": ckpt, "file": root / "notes.txt"}
    paths["file"].write_text("not a folder\n")
    paths["imgs"] = write_images(root / "imgs", 4)
    paths["empty"] = root / "empty"
    paths["empty"].mkdir()
    paths["bomb"] = root / "bomb"
    paths["bomb"].mkdir()
    (paths["bomb"] / "huge.png").write_bytes(png_header(20000, 20000))
    paths["junk"] = write_images(root / "junk", 2)
    (paths["junk"] / "zzz.png").write_bytes(b"not an image")
    (root / "latin1.toml").write_bytes('[meta]\nalgorithm = "r\xe9ptile"\n'.encode("latin-1"))
    (root / "bad.toml").write_text("[meta\nalgorithm = 1\n")
    (root / "flat.toml").write_text('algorithm = "reptile"\n')
    paths.update(
        latin1_toml=root / "latin1.toml", bad_toml=root / "bad.toml", flat_toml=root / "flat.toml"
    )

    def variant(name, change, *, digest=True):
        """A changed copy of the good checkpoint: saved as metagan saves (with a digest of the
        changed content, so the check under test is what refuses it), or without a digest."""
        state = {k: (dict(v) if isinstance(v, dict) else v) for k, v in good.items()}
        change(state)
        if digest:
            checkpoint.save(root / name, state)
        else:
            state.pop("digest", None)
            torch.save(state, root / name)
        paths[name.removesuffix(".pt")] = root / name

    def non_finite(state):
        state["params"]["g"] = state["params"]["g"].clone()
        state["params"]["g"][::7] = float("nan")

    def non_finite_opt(state):
        opt = state["optimizer"]
        key = next(iter(opt["state"]))
        opt["state"] = {**opt["state"], key: {**opt["state"][key], "exp_avg_sq": torch.full_like(
            opt["state"][key]["exp_avg_sq"], float("inf"))}}  # fmt: skip

    def bad_opt(state):  # Adam's first moment of the discriminator cut to 7 values
        opt = state["optimizer"]
        key = list(opt["state"])[1]
        opt["state"] = {**opt["state"], key: {**opt["state"][key], "exp_avg": torch.zeros(7)}}

    def at_max(state):
        state["config"] = {
            **state["config"],
            "meta": {**state["config"]["meta"], "iterations": 10**9},
        }
        state["step"] = 10**9

    def as_int64(state):
        state["params"] = {k: v.to(torch.int64) for k, v in state["params"].items()}

    variant("bad_opt.pt", bad_opt)
    variant("at_max.pt", at_max)
    variant("model_str.pt", lambda s: s.update(config={**s["config"], "model": "dcgan"}))
    # converted by hand: the old digest is kept (so it no longer matches), or dropped
    torch.save({**good, "params": {k: v.to(torch.int64) for k, v in good["params"].items()}},
               root / "int64.pt")  # fmt: skip
    variant("int64_bare.pt", as_int64, digest=False)
    variant(
        "float64.pt",
        lambda s: s.update(params={k: v.double() for k, v in s["params"].items()}),
        digest=False,
    )
    (root / "lock_a_folder" / rundir.LOCK).mkdir(parents=True)
    paths["lock_a_folder"] = root / "lock_a_folder"
    torch.save({**good, "step": 2}, root / "step_edited.pt")
    paths.update(int64=root / "int64.pt", step_edited=root / "step_edited.pt")
    paths["flipped"] = flip_bits(ckpt, root / "flipped.pt", good["params"]["g"], 200)
    shipped = checkpoint.load(pretrained.path("omniglot-dagan"))
    paths["shipped_flipped"] = flip_bits(
        pretrained.path("omniglot-dagan"),
        root / "shipped_flipped.pt",
        shipped["params"]["g"],
        20_000,
    )
    # a run folder: a finished run, a run killed before its first checkpoint, one in use
    paths["run"] = root / "run"
    paths["half_run"] = root / "half_run"
    paths["half_run"].mkdir()
    (paths["half_run"] / "config.toml").write_text("[meta]\n")
    (paths["half_run"] / "metrics.jsonl").write_text('{"step": 1}\n')
    paths["busy"] = root / "busy"
    holder = rundir.claim(paths["busy"])  # held for the whole module, as a running run holds it
    (root / "dangling").symlink_to(root / "gone" / "away")
    paths["dangling"] = root / "dangling"
    paths["dots"] = root / "dots"
    paths["dots"].mkdir()
    for i in range(5):
        Image.new("L", (1, 1), 0).save(paths["dots"] / f"dot{i}.png")
    paths["dot_classes"] = root / "dot_classes"
    for c in range(3):
        write_images(paths["dot_classes"] / f"class{c}", 4)
    Image.new("L", (1, 1), 0).save(paths["dot_classes"] / "class1" / "img9.png")
    (root / "deep.toml").write_text("[meta]\nx = " + "[" * 100_000 + "]" * 100_000 + "\n")
    paths["deep_toml"] = root / "deep.toml"
    variant("nan.pt", non_finite)
    variant("nan_opt.pt", non_finite_opt)
    variant("no_params.pt", lambda s: s.pop("params"))
    variant("no_g.pt", lambda s: s["params"].pop("g"))
    variant("no_rng.pt", lambda s: s.pop("rng"))
    wide_cfg = {k: dict(v) for k, v in good["config"].items()}
    wide_cfg["model"]["width"] = 2048  # a big G: its activations for 10^6 samples cannot fit
    checkpoint.save(root / "wide.pt", {**good, "config": wide_cfg})  # params never loaded
    paths["wide"] = root / "wide.pt"
    (root / "corrupt.pt").write_bytes(ckpt.read_bytes()[:1000])
    torch.save({"weights": torch.zeros(3)}, root / "foreign.pt")
    torch.save({"format": "metagan-checkpoint", "x": _Evil(root / "PWNED")}, root / "evil.pt")
    torch.save({**good, "config": _Evil(root / "PWNED", "exec")}, root / "evil_exec.pt")
    params = {**good["params"], "g": _Evil(root / "PWNED", "popen")}
    torch.save({**good, "params": params}, root / "evil_popen.pt")
    paths.update(evil_exec=root / "evil_exec.pt", evil_popen=root / "evil_popen.pt")
    paths.update(corrupt=root / "corrupt.pt", foreign=root / "foreign.pt", evil=root / "evil.pt")
    yield paths
    holder.release()


def flip_bits(src: Path, dest: Path, tensor: torch.Tensor, bits: int) -> Path:
    """A copy of checkpoint ``src`` with ``bits`` random bits of ``tensor``'s stored bytes
    flipped in the file itself (torch stores tensors uncompressed; its zip CRCs are then stale)."""
    raw = bytearray(src.read_bytes())
    data = tensor.numpy().tobytes()
    start = raw.find(data)
    assert start > 0 and raw.find(data, start + 1) < 0
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(data) * 8, size=bits, replace=False):
        raw[start + pos // 8] ^= 1 << (pos % 8)
    dest.write_bytes(bytes(raw))
    return dest


def fill(argv, env, out):
    return [a.format(**{k: str(v) for k, v in env.items()}, out=out) for a in argv]


def check_one_line(err: str, fragment: str):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("metagan") and "error" in lines[0], err
    assert fragment in lines[0], err
    assert len(lines[0]) < 1000, lines[0][:2000]  # user input is quoted cut to a readable length


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(env, capsys, argv, fragment):
    out = str(env["root"] / "out")
    before = snapshot(env["root"])
    capsys.readouterr()
    code = main(fill(argv, env, out))
    err = capsys.readouterr().err
    assert code == 2, err
    check_one_line(err, fragment)
    assert snapshot(env["root"]) == before  # nothing written, nothing half-written
    assert not (env["root"] / "PWNED").exists()  # the unsafe pickle was never run


def test_the_table_is_large():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


# -- the same, end to end in real processes ------------------------------------------------------
@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([*TRAIN, "meta.lr=inf"], "meta.lr must be a learning rate"),
        (["sample", "--checkpoint", "{nan}", "--out", "{out}"], "are not finite"),
        (["adapt", "--checkpoint", "{evil}", "--unseen", "2", "--out", "{out}"], "could run code"),
        (["train", *TINY, "--out", "/proc/metagan-run"], "cannot be written"),
    ],
    ids=["meta-lr-inf", "non-finite-checkpoint", "unsafe-checkpoint", "out-on-proc"],
)
def test_bad_input_in_a_real_process(env, argv, fragment):
    out = str(env["root"] / "out")
    before = snapshot(env["root"])
    r = subprocess.run([sys.executable, "-m", "metagan", *fill(argv, env, out)],
                       capture_output=True, text=True, env=cli_env(), timeout=300)  # fmt: skip
    assert r.returncode == 2, r.stderr
    check_one_line(r.stderr, fragment)
    assert snapshot(env["root"]) == before
    assert not (env["root"] / "PWNED").exists()


def test_a_non_utf8_path_in_a_real_process(env):
    """Undecodable bytes in an argument (a file name from another locale): one line, exit 2."""
    out = os.fsencode(env["root"]) + b"/out\xff"
    r = subprocess.run([sys.executable.encode(), b"-m", b"metagan", b"train", *map(os.fsencode, TINY), b"--out", out],
                       capture_output=True, env=cli_env(), timeout=300)  # fmt: skip
    assert r.returncode == 2, r.stderr
    check_one_line(r.stderr.decode("utf-8", "replace"), "is not valid UTF-8")
    assert not os.path.exists(out)


# -- plugin faults: one line naming the plugin -----------------------------------------------------
class _BadPlugin:
    """A plugin whose architectures and datasets are each wrong in one way."""

    @staticmethod
    @plugins.hookimpl
    def metagan_register_architectures(registry):
        def wrap(fix):
            def build(cfg):
                pair = plugins_registries().architectures.get("mlp")(cfg)
                return fix(pair)

            return build

        class TwoColumnD(torch.nn.Module):
            def __init__(self, d):
                super().__init__()
                self.d = d

            def forward(self, x):
                return self.d(x)[:, None]  # (B, 1), not (B,)

        class NoTanhG(torch.nn.Module):
            def __init__(self, g):
                super().__init__()
                self.g = g

            def forward(self, z):
                return self.g(z) * 3 + 2

        def raises(cfg):
            raise RuntimeError("CUDA kernels not compiled")

        registry.add("raises", raises)
        registry.add("tuple", wrap(lambda p: (p.generator, p.discriminator)))
        registry.add("d-b1", wrap(lambda p: GanPair(p.generator, TwoColumnD(p.discriminator))))
        registry.add("g-range", wrap(lambda p: GanPair(NoTanhG(p.generator), p.discriminator)))
        registry.add("g-shape", wrap(lambda p: GanPair(torch.nn.Linear(16, 5), p.discriminator)))

    @staticmethod
    @plugins.hookimpl
    def metagan_register_datasets(registry):
        from metagan.data.base import ClassDataset, ClassRef

        class Broken(ClassDataset):
            def __init__(self, *, root=None, seed=0):
                raise FileNotFoundError("/data/broken is gone")

            def load_class(self, index):
                return []

        class BadLoader(ClassDataset):
            def __init__(self, *, root=None, seed=0):
                super().__init__(root=root, seed=seed)
                self.classes = [ClassRef(f"g{i % 3}/c{i}", f"g{i % 3}", 8) for i in range(12)]

            def load_class(self, index):
                raise KeyError("image index out of date")

        registry.add("broken", Broken)
        registry.add("bad-loader", BadLoader)


def plugins_registries():
    return plugins.get()


PLUGIN_CASES = [
    (
        ["--arch", "raises"],
        "architecture 'raises' (plugin 'badplug') failed to build: RuntimeError",
    ),
    (["--arch", "tuple"], "must return a GanPair"),
    (["--arch", "d-b1"], "the discriminator returns (2, 1), it must return (2,)"),
    (["--arch", "g-range"], "the generator's output must be finite and in [-1, 1]"),
    (["--arch", "g-shape"], "(plugin 'badplug'): the generator"),
    (
        ["--dataset", "broken"],
        "dataset 'broken' (plugin 'badplug') failed to open: FileNotFoundError",
    ),
    (["--dataset", "bad-loader"], "dataset 'bad-loader' (plugin 'badplug') failed to load class"),
]


@pytest.mark.parametrize("extra, fragment", PLUGIN_CASES, ids=[c[0][1] for c in PLUGIN_CASES])
def test_a_plugin_fault_is_one_line_naming_the_plugin(
    tmp_path, capsys, monkeypatch, extra, fragment
):
    regs = plugins.load(extra=[("badplug", _BadPlugin)])
    monkeypatch.setattr(plugins, "get", lambda disabled=(): regs)
    out = tmp_path / "out"
    code = main(["train", *TINY, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    check_one_line(err, fragment)
    assert not out.exists()


# -- non-finite state: never saved, rolled back, reported ---------------------------------------
def tiny_trainer(tmp_path, *extra):
    from metagan import config
    from metagan.train import Trainer

    cfg = config.load(None, [*TINY[4:], "data.dataset=glyphs", "meta.algorithm=fomaml",
                             f"run.out={tmp_path / 'run'}", *extra])  # fmt: skip
    return Trainer(cfg)


def test_a_non_finite_update_is_rolled_back_and_counted_as_skipped(tmp_path):
    """Step 2's Adam update overflows the optimizer state (gradients of 3e38 square to inf):
    parameters and optimizer state are restored exactly, the step counts as skipped, and the
    run goes on; the saved checkpoint is finite."""
    trainer = tiny_trainer(tmp_path, "meta.iterations=3", "run.checkpoint_every=1")
    real, calls, seen = trainer.s.algorithm.step, [], {}

    def step(params, batch, noise, engine):
        res = real(params, batch, noise, engine)
        calls.append(1)
        if len(calls) == 2:
            seen["params"] = {k: p.detach().clone() for k, p in trainer.params.items()}
            seen["state"] = {
                id(p): {n: v.clone() for n, v in st.items()} for p, st in trainer.opt.state.items()
            }
            res.grads = {k: torch.full_like(g, 3e38) for k, g in res.grads.items()}
        return res

    trainer.s.algorithm.step = step
    orig_apply, after = trainer._apply, {}

    def apply(grads):
        ok = orig_apply(grads)
        if len(calls) == 2:
            after["ok"] = ok
            after["params"] = {k: p.detach().clone() for k, p in trainer.params.items()}
            after["state"] = {
                id(p): {n: v.clone() for n, v in st.items()} for p, st in trainer.opt.state.items()
            }
        return ok

    trainer._apply = apply
    res = trainer.run(log=lambda line: None)
    assert after["ok"] is False
    for k in seen["params"]:
        assert torch.equal(after["params"][k], seen["params"][k]), k
    for pid, st in seen["state"].items():
        for n, v in st.items():
            assert torch.equal(after["state"][pid][n], v), n
    assert (res.applied, res.skipped) == (2, 1)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert ['"skipped": true' in x for x in lines] == [False, True, False]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["params"].values())
    for st in ckpt["optimizer"]["state"].values():
        assert all(torch.isfinite(v).all() for v in st.values())


def test_an_overflowing_meta_lr_never_reaches_a_checkpoint(tmp_path):
    """Adam with an infinite step size (what meta.lr=inf did before it was refused) makes
    every update non-finite: each is rolled back, the run stops after meta.max_skips, and it
    says that no checkpoint was written, naming no file."""
    from metagan.errors import TrainingDiverged

    trainer = tiny_trainer(tmp_path, "meta.iterations=10", "meta.max_skips=3")
    for group in trainer.opt.param_groups:
        group["lr"] = float("inf")
    with pytest.raises(TrainingDiverged) as info:
        trainer.run(log=lambda line: None)
    msg = str(info.value)
    assert "no checkpoint was written" in msg and "checkpoint.pt" not in msg, msg
    assert "3 skipped" in msg
    # a new output folder of a run that wrote no checkpoint is removed with what it held
    assert not (tmp_path / "run").exists()


def test_a_failing_run_keeps_a_folder_it_did_not_create(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("keep")
    trainer = tiny_trainer(tmp_path, "meta.iterations=10", "meta.max_skips=2")
    trainer.s.algorithm.step = lambda *a: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        trainer.run(log=lambda line: None)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.toml", "metrics.jsonl", "mine.txt"
    ]  # fmt: skip


def test_the_end_of_a_run_reports_skipped_steps_and_dropped_tasks(tmp_path, capsys, monkeypatch):
    from metagan.algorithm import Algorithm

    real = Algorithm.step
    calls = []

    def step(self, params, batch, noise, engine):  # task 0 of step 2 goes non-finite
        calls.append(1)
        if len(calls) == 2:
            batch.support[0] = float("nan")
        return real(self, params, batch, noise, engine)

    monkeypatch.setattr(Algorithm, "step", step)
    assert main(["train", *TINY, "--algorithm", "fomaml", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "meta-steps: 3 applied, 0 skipped (non-finite); tasks dropped (non-finite): 1" in out
    assert f"checkpoint: {tmp_path / 'r' / 'checkpoint.pt'}" in out


# -- images ------------------------------------------------------------------------------------
def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    """A 16-bit grayscale PNG keeps its tones: value v becomes round(v / 257), not white."""
    from metagan.data.images import open_image

    a = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    got = np.asarray(open_image(tmp_path / "deep.png"))
    np.testing.assert_array_equal(got, np.rint(a / 257.0).astype(np.uint8))
    assert got.min() == 0 and got.max() == 255 and len(np.unique(got)) > 32


# -- leftovers, permissions, processes ---------------------------------------------------------
def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.a1b2c3d4.tmp", out / ".config.toml.zz_9x8y7.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    keep = [out / ".checkpoint.pt.notes", out / "mine.tmp"]
    for p in keep:
        p.write_text("user file")
    assert main(["train", *TINY, "--algorithm", "fomaml", "--out", str(out)]) == 0
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert not list(out.glob(".*.tmp"))


def test_written_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        assert main(["train", *TINY, "--algorithm", "reptile", "--out", str(tmp_path / "r")]) == 0
    finally:
        os.umask(old)
    for name in ("checkpoint.pt", "config.toml", "metrics.jsonl"):
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o640, name
    for png in (tmp_path / "r" / "samples").glob("*.png"):
        assert png.stat().st_mode & 0o777 == 0o640


KILL_WRITER = """
import sys, torch
from metagan import checkpoint
i = 0
while True:  # a checkpoint of about 4 MB, rewritten as fast as possible
    checkpoint.save(sys.argv[1], {"config": {}, "params": {"g": torch.full((10**6,), float(i))}, "step": i})
    i += 1
"""


def test_kill_9_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path):
    """A process killed at any moment of a checkpoint write leaves the previous or the new
    checkpoint whole (atomic writes), and the next start removes the temporary files."""
    import signal
    import time

    from metagan import checkpoint
    from metagan.io import remove_stale_temps

    path = tmp_path / "checkpoint.pt"
    for delay in (1.5, 2.0, 2.5):
        p = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(path)], env=cli_env())
        deadline = time.time() + 60
        while not path.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        ckpt = checkpoint.load(path)
        g = ckpt["params"]["g"]
        assert torch.equal(g, torch.full_like(g, float(ckpt["step"])))
    remove_stale_temps(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_torchrun_config_error_is_printed_once_with_exit_2(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "metagan", "train", *TINY, "meta.lr=inf", "--out", str(tmp_path / "r")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=cli_env(OMP_NUM_THREADS="1"))  # fmt: skip
    ours = [line for line in r.stderr.splitlines() if line.startswith("metagan:")]
    assert ours == ["metagan: error: meta.lr must be a learning rate in (0, 1], got inf"], r.stderr
    assert "exitcode  : 2" in r.stderr  # the worker's exit code, as torchrun reports it
    assert not (tmp_path / "r").exists()


def test_torchrun_workers_stop_when_the_agent_is_killed(tmp_path):
    """kill -9 of torchrun itself: its workers notice the lost parent and stop within seconds
    instead of training on as orphans; a worker whose peer went first says so in one line,
    not a gloo traceback."""
    import signal
    import time

    out = tmp_path / "r"
    log = open(tmp_path / "stderr.txt", "w")  # the workers' too: they inherit the agent's
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "metagan", "train", *TINY, "--iterations", "1000000", "meta.tasks=2",
           "--out", str(out)]  # fmt: skip
    agent = subprocess.Popen(cmd, env=cli_env(OMP_NUM_THREADS="1"), stdout=subprocess.DEVNULL,
                             stderr=log, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 180
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").stat().st_size:
            assert time.time() < deadline and agent.poll() is None, "training never started"
            time.sleep(0.2)
        workers = children(agent.pid)
        assert len(workers) == 2, workers
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        deadline = time.time() + 30
        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(alive(w) for w in workers), "workers train on without their agent"
        err = (tmp_path / "stderr.txt").read_text()
        assert "Traceback" not in err and "gloo" not in err.lower(), err
        for line in err.splitlines():
            assert (
                not line.startswith("metagan") or "stopped: the torchrun agent is gone" in line
            ), err
    finally:
        log.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- a run folder belongs to one run -------------------------------------------------------------
def test_two_trainings_on_one_folder_in_real_processes(tmp_path):
    """Two `metagan train` started at once on one --out: exactly one trains, the other exits 2
    with one line (the folder is in use, or already holds the first run), and the surviving
    run's checkpoint, config and metrics are whole: every metrics line valid JSON, each step once."""
    out = tmp_path / "r"
    argv = [sys.executable, "-m", "metagan", "train", *TINY, "--iterations", "8", "--out", str(out)]
    procs = [subprocess.Popen([*argv, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=cli_env(OMP_NUM_THREADS="1")) for seed in (1, 2)]  # fmt: skip
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in results) == [0, 2], results
    (won, _, _), (_, _, lost_err) = sorted(results, key=lambda r: r[0])
    assert "is in use by another metagan run" in lost_err or "already holds a run" in lost_err
    check_one_line(lost_err, f"run.out {out}")
    ckpt = checkpoint.load(out / "checkpoint.pt")  # its digest checked
    seed = ckpt["config"]["run"]["seed"]
    assert ckpt["step"] == 8 and f"seed = {seed}" in (out / "config.toml").read_text()
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
    assert not (out / rundir.LOCK).exists()


KILLED_HOLDER = """
import sys, time
from metagan import rundir
rundir.claim(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_run_leaves_no_lock_that_blocks(tmp_path, capsys):
    """kill -9 of a run that holds its folder: the kernel drops its lock, so the next run on
    the folder (which holds no run files) starts, though the lock file is still there."""
    import signal

    out = tmp_path / "r"
    p = subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, str(out)], stdout=subprocess.PIPE,
                         text=True, env=cli_env())  # fmt: skip
    assert p.stdout.readline() == "held\n"
    assert main(["train", *TINY, "--out", str(out)]) == 2  # held while it lives
    check_one_line(capsys.readouterr().err, f"(pid {p.pid} on ")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (out / rundir.LOCK).exists()  # stale: no process holds it
    assert main(["train", *TINY, "--algorithm", "reptile", "--out", str(out)]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 3
    assert not (out / rundir.LOCK).exists()


def test_overwrite_replaces_a_run_and_resume_continues_it(tmp_path, capsys):
    out = tmp_path / "r"
    train = ["train", *TINY, "--algorithm", "reptile", "--out", str(out)]
    assert main(train) == 0
    first = checkpoint.load(out / "checkpoint.pt")
    (out / "mine.txt").write_text("the user's own file")
    assert main([*train, "--seed", "7", "--overwrite"]) == 0
    second = checkpoint.load(out / "checkpoint.pt")
    assert second["config"]["run"]["seed"] == 7 and second["step"] == 3
    assert not torch.equal(first["params"]["g"], second["params"]["g"])
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3  # the old run's are gone
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step_000003.png"]
    assert (out / "mine.txt").read_text() == "the user's own file"
    assert main(["train", "--resume", str(out / "checkpoint.pt"), "--iterations", "5"]) == 0
    assert checkpoint.load(out / "checkpoint.pt")["step"] == 5
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_the_python_api_refuses_the_same(env, tmp_path):
    import metagan
    from metagan.errors import CheckpointError, ConfigError, DataError

    with pytest.raises(CheckpointError, match="tensor 'params/g' differs from the digest"):
        metagan.load(env["shipped_flipped"])
    with pytest.raises(CheckpointError, match="parameters 'g' are int64"):
        metagan.load(env["int64_bare"])
    dots = [Image.new("L", (1, 1), 0)] * 5  # five 1x1 shots, as PIL images
    with pytest.raises(DataError, match="is 1x1 pixels, too small to hold a drawing"):
        metagan.load(env["ckpt"]).adapt(dots)
    with pytest.raises(ConfigError, match="already holds a run"):
        metagan.train(overrides=[*TINY[4:], f"run.out={env['run']}"])
    with pytest.raises(ConfigError, match="is in use by another metagan run"):
        metagan.train(overrides=[*TINY[4:], f"run.out={env['busy']}"], overwrite=True)


# -- integrity -----------------------------------------------------------------------------------
def test_shipped_checkpoints_carry_a_digest_that_holds():
    for name in pretrained.available():
        ckpt = checkpoint.load(pretrained.path(name))  # verified on load
        assert set(ckpt["digest"]["tensors"]) == {f"params/{k}" for k in ckpt["params"]}
        assert ckpt["digest"] == checkpoint.digest(ckpt)


def test_a_checkpoint_without_a_digest_loads_with_the_structural_checks(env, tmp_path):
    """Checkpoints written before digests: accepted, and adapt exactly as with a digest."""
    import metagan

    good = torch.load(env["ckpt"], weights_only=True)
    torch.save({k: v for k, v in good.items() if k != "digest"}, tmp_path / "old.pt")
    a = metagan.load(env["ckpt"]).adapt(env["imgs"].glob("*.png"), seed=3).sample(4)
    b = metagan.load(tmp_path / "old.pt").adapt(env["imgs"].glob("*.png"), seed=3).sample(4)
    assert torch.equal(a, b)


def test_one_flipped_bit_anywhere_in_a_tensor_is_found(env, tmp_path):
    from metagan.errors import CheckpointError

    ckpt = checkpoint.load(env["ckpt"])
    for name, t in (("params/d", ckpt["params"]["d"]), ("rng/noise", ckpt["rng"]["noise"])):
        bad = flip_bits(env["ckpt"], tmp_path / "one.pt", t, 1)
        with pytest.raises(CheckpointError, match=f"tensor '{name}' differs"):
            checkpoint.load(bad)


# -- images and disks ------------------------------------------------------------------------------
def test_large_images_are_allowed_by_metagan_max_image_pixels(tmp_path, monkeypatch):
    """The decompression-bomb guard stays on (Pillow's limit) unless the variable raises it."""
    from metagan.data.images import MAX_PIXELS_ENV, open_image
    from metagan.errors import ConfigError, DataError

    path = write_images(tmp_path, 1) / "img0.png"  # 40 x 40 = 1600 pixels
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")
    with pytest.raises(DataError, match=f"decompression bomb.*allow it with {MAX_PIXELS_ENV}=N"):
        open_image(path)
    for allowed in ("1600", "none"):
        monkeypatch.setenv(MAX_PIXELS_ENV, allowed)
        assert open_image(path).size == (40, 40)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=f"{MAX_PIXELS_ENV} must be a positive number"):
        open_image(path)
    assert Image.MAX_IMAGE_PIXELS == Image.MAX_IMAGE_PIXELS.__class__(89478485)  # restored


def test_a_full_disk_names_the_file(tmp_path, capsys, monkeypatch):
    import errno

    from metagan import io
    from metagan.errors import MetaganError

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    out = tmp_path / "r"
    assert main(["train", *TINY, "--out", str(out)]) == 2
    check_one_line(capsys.readouterr().err, f"{out / 'config.toml'}: No space left on device")
    assert not out.exists()  # the new folder of a run that wrote nothing is removed
    with pytest.raises(OSError) as info, io.named_errors(tmp_path / "metrics.jsonl"):
        full(0)
    assert info.value.filename == str(tmp_path / "metrics.jsonl")
    # the lock file's holder line cannot be written either: one line naming it, nothing left
    monkeypatch.setattr(rundir.os, "pwrite", lambda *a: full(0))
    with pytest.raises(MetaganError, match=r"\.metagan\.lock: No space left on device"):
        rundir.claim(tmp_path / "r2")
    assert not (tmp_path / "r2").exists()


def test_a_feature_extractor_carries_a_digest_too(tmp_path, capsys):
    """`eval fit-features` files: saved with a digest, a flipped bit refused on load."""
    from metagan.eval import features
    from metagan.eval.classifier import ConvNet, FitConfig

    net = ConvNet(num_classes=3, dim=8, width=4)
    feats = features.Features(
        net=net, data={}, train_classes=["a"], test_classes=["b"], accuracy=0.5
    )
    features.save(feats, tmp_path / "f.pt", FitConfig(steps=1))
    assert features.load(tmp_path / "f.pt").accuracy == 0.5
    weight = torch.load(tmp_path / "f.pt", weights_only=True)["state_dict"]["features.0.weight"]
    flip_bits(tmp_path / "f.pt", tmp_path / "bad.pt", weight, 1)
    assert main(["eval", "--features", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o")]) == 2
    check_one_line(capsys.readouterr().err, "tensor 'state_dict/features.0.weight' differs")
