"""Built-in architectures: ``dcgan`` and ``mlp``."""

from metagan.plugins import hookimpl

from .dcgan import build_dcgan
from .mlp import build_mlp


@hookimpl
def metagan_register_architectures(registry):
    registry.add("dcgan", build_dcgan, description="convolutional G/D for 28, 32 and 64 px")
    registry.add(
        "mlp", build_mlp, description="fully connected G/D (z -> 256 -> H*W), the reference design"
    )
