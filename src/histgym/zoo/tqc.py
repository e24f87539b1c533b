"""rl-zoo3 hyperparameters of TQC for histgym's ids (``--conf-file histgym.zoo.tqc``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("tqc")
