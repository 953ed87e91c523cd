"""bpcore: backpropagation in plain numpy, written as the chain rule.

>>> import bpcore
>>> net = bpcore.MLP([2, 16, 16, 2], activation="tanh", output="softmax")
>>> loss, bp = net.loss_and_grads(x, y, "cross_entropy")   # bp.dW[l] = ∂L/∂Wˡ
>>> deep = bpcore.MLP([2, *[16] * 30, 2], norm="batch", residual=True)   # the remedies
"""

from bpcore.activations import ACTIVATIONS, Activation, get_activation
from bpcore.datasets import DATASETS, Dataset, make_dataset
from bpcore.gradcheck import gradcheck
from bpcore.inits import BIAS_INITS, INITIALIZERS, get_bias_init, get_initializer
from bpcore.losses import HEADS, LOSSES
from bpcore.mlp import MLP, Backprop
from bpcore.norms import NORMS
from bpcore.optim import LR_SCALING, OPTIMIZERS, get_optimizer, scaled_lr
from bpcore.training import Callback, EpochReport, FitResult, StepReport, evaluate, fit

__all__ = [
    "ACTIVATIONS",
    "BIAS_INITS",
    "DATASETS",
    "HEADS",
    "INITIALIZERS",
    "LOSSES",
    "LR_SCALING",
    "MLP",
    "NORMS",
    "OPTIMIZERS",
    "Activation",
    "Backprop",
    "Callback",
    "Dataset",
    "EpochReport",
    "FitResult",
    "StepReport",
    "evaluate",
    "fit",
    "get_activation",
    "get_bias_init",
    "get_initializer",
    "get_optimizer",
    "gradcheck",
    "make_dataset",
    "scaled_lr",
]
