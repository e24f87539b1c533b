"""rl-zoo3 hyperparameters of TD3 for histgym's ids (``--conf-file histgym.zoo.td3``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("td3")
