"""rl-zoo3 hyperparameters of PPO for histgym's ids (``--conf-file histgym.zoo.ppo``)."""

from . import zoo_hyperparams

hyperparams = zoo_hyperparams("ppo")
