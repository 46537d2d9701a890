"""Built-in meta-algorithms (one file each) and the two GAN baselines users compare against."""

from metagan.plugins import hookimpl

from .finetune import Finetune
from .fomaml import FOMAML
from .maml import MAML
from .metasgd import MetaSGD
from .reptile import Reptile
from .scratch import Scratch


@hookimpl
def metagan_register_algorithms(registry):
    for cls in (MAML, FOMAML, Reptile, MetaSGD, Finetune, Scratch):
        registry.add(cls.name, cls)
