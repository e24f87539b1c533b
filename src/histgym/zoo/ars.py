"""rl-zoo3 hyperparameters of ARS for histgym's ids (``--conf-file histgym.zoo.ars``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("ars")
