"""metagan: meta-learning GANs for few-shot generation.

A generator and a discriminator are meta-trained over many few-shot tasks (one class, K images
each) so that a few inner gradient steps adapt them to a class never seen in training. See
``docs/api.md`` for the Python API below, ``docs/architecture.md`` for the data flow and
``docs/plugins.md`` for writing plugins.

The public face is :data:`__all__`; everything else lives in submodules (``metagan.models``,
``metagan.algorithm``, ... as docs/plugins.md lists them).
"""

from metagan._version import __version__
from metagan.algorithm import MetaConfig  # noqa: E402
from metagan.api import AdaptedGenerator, FewShotGenerator, load, train  # noqa: E402
from metagan.config import Config, DataConfig, ModelConfig, RunConfig  # noqa: E402
from metagan.errors import MetaganError  # noqa: E402
from metagan.fewshot import MixedBatchSampler, MixedFewShotDataset  # noqa: E402
from metagan.inner import InnerConfig  # noqa: E402
from metagan.registration import register  # noqa: E402
from metagan.train import TrainResult  # noqa: E402
from metagan.transforms import Jitter  # noqa: E402

__all__ = [
    "AdaptedGenerator",
    "Config",
    "DataConfig",
    "FewShotGenerator",
    "InnerConfig",
    "Jitter",
    "MetaConfig",
    "MetaganError",
    "MixedBatchSampler",
    "MixedFewShotDataset",
    "ModelConfig",
    "RunConfig",
    "TrainResult",
    "__version__",
    "load",
    "register",
    "train",
]
