"""Built-in architectures: ``dcgan`` and ``mlp`` (unconditional); ``dagan``, ``fusion`` and
``warp``, ``jitter`` and ``between`` (conditioned on the task's shots)."""

from metagan.plugins import hookimpl

from .between import build_between
from .dagan import build_dagan
from .dcgan import build_dcgan
from .fusion import build_fusion
from .jitter import build_jitter
from .mlp import build_mlp
from .warp import build_warp


@hookimpl
def metagan_register_architectures(registry):
    registry.add(
        "dcgan",
        build_dcgan,
        description="convolutional G/D for 28, 32, 64 and 128 px, 1 or 3 channels",
    )
    registry.add(
        "mlp", build_mlp, description="fully connected G/D (z -> 256 -> H*W), the reference design"
    )
    registry.add(
        "dagan", build_dagan,
        description="conditional: G redraws one shot (encoder-decoder), D judges (shot, image) pairs",
    )  # fmt: skip
    registry.add(
        "fusion", build_fusion,
        description="conditional: G mixes all K shots' features with random convex weights",
    )  # fmt: skip
    registry.add(
        "warp", build_warp,
        description="conditional: G learns smooth deformations of one shot (z and the shot decide); dagan's D",
    )  # fmt: skip
    registry.add(
        "jitter", build_jitter,
        description="conditional: G is the free affine/elastic/stroke jitter of one shot, with learned gains and corrections; dagan's D",
    )  # fmt: skip
    registry.add(
        "between", build_between,
        description="conditional: jitter after a move towards another shot (registered) and a real deformation (bank)",
    )  # fmt: skip
