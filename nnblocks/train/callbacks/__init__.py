"""Built-in callbacks. Each lives in its own file; the public names are re-exported here."""

from nnblocks.train.callbacks.checkpoint import SaveCheckpoint
from nnblocks.train.callbacks.early_stopping import EarlyStopping, Monitor
from nnblocks.train.callbacks.grad_accumulation import GradientAccumulation
from nnblocks.train.callbacks.grad_clip import GradientClip
from nnblocks.train.callbacks.history_csv import CSVLogger
from nnblocks.train.callbacks.loss_curves import LossCurves
from nnblocks.train.callbacks.mixed_precision import MixedPrecision
from nnblocks.train.callbacks.nan_guard import NanGuard
from nnblocks.train.callbacks.progress import Progress
from nnblocks.train.callbacks.schedule import ParamScheduler, one_cycle_scheduler
from nnblocks.train.callbacks.teacher_forcing import TeacherForcing, teacher_forcing_value
from nnblocks.train.callbacks.tensorboard import TensorBoardLogger

__all__ = [
    "SaveCheckpoint",
    "EarlyStopping",
    "Monitor",
    "GradientAccumulation",
    "GradientClip",
    "CSVLogger",
    "LossCurves",
    "MixedPrecision",
    "NanGuard",
    "Progress",
    "ParamScheduler",
    "one_cycle_scheduler",
    "TeacherForcing",
    "teacher_forcing_value",
    "TensorBoardLogger",
]
