"""rl-zoo3 hyperparameters of TRPO for histgym's ids (``--conf-file histgym.zoo.trpo``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("trpo")
