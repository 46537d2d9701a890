"""metagan: meta-learning GANs for few-shot generation.

A generator and a discriminator are meta-trained over many few-shot tasks (one class, K images
each) so that a few inner gradient steps adapt them to a class never seen in training. See
``docs/architecture.md`` for the data flow and ``docs/plugins.md`` for writing plugins.
"""

__version__ = "0.1.0"
