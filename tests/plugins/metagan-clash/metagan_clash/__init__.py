"""Registers an algorithm called `reptile`, a name the built-in algorithms plugin uses too."""

from metagan.algorithm import Algorithm
from metagan.plugins import hookimpl


class OtherReptile(Algorithm):
    """Another plugin's idea of reptile (never run by the tests)."""


@hookimpl
def metagan_register_algorithms(registry):
    registry.add("reptile", OtherReptile)
