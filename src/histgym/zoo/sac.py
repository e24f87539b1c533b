"""rl-zoo3 hyperparameters of SAC for histgym's ids (``--conf-file histgym.zoo.sac``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("sac")
