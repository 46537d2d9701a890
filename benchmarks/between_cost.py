"""Time one generator forward of `between` and `jitter` for a meta-batch (docs/results.md):

    python benchmarks/between_cost.py      # 8 tasks x 5 samples, K = 5 shots, 28 px, one thread

`between` registers the K x K shot pairs of every task in each forward; `jitter` does not.
"""

import time

import torch
from torch.func import vmap

from metagan import plugins
from metagan.models import ArchConfig, FunctionalNet

if __name__ == "__main__":
    torch.set_num_threads(1)
    regs = plugins.get()
    for arch, z_dim in (("between", 80), ("jitter", 64)):
        torch.manual_seed(0)
        pair = regs.architectures.get(arch)(ArchConfig(image_size=28, z_dim=z_dim, width=16))
        G = FunctionalNet(pair.generator)
        theta = G.init_flat().expand(8, -1).clone()
        z, shots = torch.randn(8, 5, z_dim), torch.rand(8, 5, 1, 28, 28) * 2 - 1
        vmap(G)(theta, z, shots)  # warm-up
        t0 = time.perf_counter()
        vmap(G)(theta, z, shots)
        print(
            f"{arch}: one G forward, 8 tasks x 5 samples, K = 5: {time.perf_counter() - t0:.2f} s"
        )
