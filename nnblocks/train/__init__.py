"""Training: the Learner, its events and callbacks, schedules, lr_find, checkpoints, DDP.

``nnblocks.train`` knows nothing about specific models: the Learner fits any ``nn.Module``.
"""

from nnblocks.train.activations import checkpoint_activations, remove_activation_checkpointing
from nnblocks.train.callback import Callback, CallbackTable
from nnblocks.train.callbacks import (
    CSVLogger,
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    LossCurves,
    MixedPrecision,
    NanGuard,
    ParamScheduler,
    Progress,
    SaveCheckpoint,
    TeacherForcing,
    TensorBoardLogger,
    one_cycle_scheduler,
)
from nnblocks.train.checkpoint import (
    load_model_weights,
    load_training_state,
    save_training_state,
)
from nnblocks.train.events import (
    EVENTS,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
)

# Through the submodule, so that importing `nnblocks.train.freeze` later cannot rebind
# `nnblocks.train.freeze` (the function) to the module.
from nnblocks.train.freeze import freeze, unfreeze
from nnblocks.train.learner import Learner
from nnblocks.train.loaders import DatasetLoader, TensorLoader, make_loader
from nnblocks.train.lr_find import LRFindResult, lr_find
from nnblocks.train.metrics import MetricSet, make_metric
from nnblocks.train.optim import make_optimizer, split_groups, spread_lr
from nnblocks.train.resolve import LOSSES
from nnblocks.train.schedules import (
    Constant,
    Cosine,
    Exponential,
    Linear,
    OneCycle,
    OneCycleMomentum,
    Schedule,
    make_schedule,
)

__all__ = [
    "Learner",
    "LOSSES",
    "Callback",
    "CallbackTable",
    "EVENTS",
    "CancelBatch",
    "CancelStep",
    "CancelTrain",
    "CancelValidate",
    "CancelEpoch",
    "CancelFit",
    "CSVLogger",
    "EarlyStopping",
    "GradientAccumulation",
    "GradientClip",
    "LossCurves",
    "MixedPrecision",
    "NanGuard",
    "ParamScheduler",
    "Progress",
    "SaveCheckpoint",
    "TeacherForcing",
    "TensorBoardLogger",
    "one_cycle_scheduler",
    "save_training_state",
    "load_training_state",
    "load_model_weights",
    "freeze",
    "unfreeze",
    "checkpoint_activations",
    "remove_activation_checkpointing",
    "TensorLoader",
    "DatasetLoader",
    "make_loader",
    "lr_find",
    "LRFindResult",
    "MetricSet",
    "make_metric",
    "make_optimizer",
    "split_groups",
    "spread_lr",
    "Schedule",
    "Constant",
    "Linear",
    "Cosine",
    "Exponential",
    "OneCycle",
    "OneCycleMomentum",
    "make_schedule",
]
