"""rl-zoo3 hyperparameters of A2C for histgym's ids (``--conf-file histgym.zoo.a2c``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("a2c")
