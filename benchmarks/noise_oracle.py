"""Oracle ceilings of "collapse to the shots' mean" on the validation classes (Korean, 40 classes,
K = 5), scored like docs/results.md's noise-only table. Needs the validation split's extractor:

    metagan eval fit-features --config docs/results/noise/validation/train_3_alphabets.toml \
        --steps 800 --out runs/tune/features.pt
    python benchmarks/noise_oracle.py
"""

import torch

from metagan import config, plugins
from metagan.eval import features as F
from metagan.eval.classifier import FitConfig, embed, fit, predict
from metagan.eval.run import _class_data, score
from metagan.session import Session

torch.set_num_threads(1)
cfg = config.load("docs/results/noise/validation/train_3_alphabets.toml", [])
s = Session(cfg, plugins.get(), check_memory=False)
feats = F.load("runs/tune/features.pt")
idx = [i for i in s.split[1] if s.dataset.classes[i].group == "Korean"]
cd = _class_data(s, idx, 0)
shots, real = cd.split(5)
y = torch.cat([torch.full((x.shape[0],), c) for c, x in enumerate(real)])
judge = fit(torch.cat(real), y, len(idx), FitConfig(steps=400, seed=0))
real_f = [embed(feats.net, x) for x in real]
shot_f = [embed(feats.net, x) for x in shots]
g = torch.Generator().manual_seed(0)


def run(name, imgs):
    m = score(
        [embed(feats.net, x) for x in imgs], [predict(judge, x) for x in imgs], real_f, shot_f
    )
    print(
        f"{name:<20} fidelity {m['fidelity']:.3f} memo {m['memorisation']:.3f} FID {m['fid']:.1f}",
        flush=True,
    )


mean = shots.mean(1, keepdim=True).expand(-1, 32, -1, -1, -1)
run("mean", mean)
run("mean+noise0.3", (mean + 0.3 * torch.randn(mean.shape, generator=g)).clamp(-1, 1))
w = torch.distributions.Dirichlet(torch.ones(5)).sample((len(idx), 32))
mix = torch.einsum("tnk,tkchw->tnchw", w, shots)
run("convex mix", mix)
run("sharpened mean", torch.tanh(3 * (mean + 0.6)))
run("sharpened mix", torch.tanh(3 * (mix + 0.6)))
