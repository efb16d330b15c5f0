"""A recipe plugin for the interruption tests: an MLP whose N-th training forward pauses.

With ``NNB_PAUSE_MARKER`` and ``NNB_PAUSE_AT`` set, the N-th training forward writes the
marker file and sleeps, so the test can send a signal while that step is running: the
step must finish, a checkpoint be written, and the process exit. Without them it is a
plain deterministic MLP (dropout makes the RNG state matter for an exact resume).
"""

import os
import pathlib
import time

import torch
from torch import nn

import nnblocks


@nnblocks.register("model", "pause_mlp", override=True)
class PauseMLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, num_classes),
        )
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.calls += 1
            marker = os.environ.get("NNB_PAUSE_MARKER")
            if marker and self.calls == int(os.environ.get("NNB_PAUSE_AT", "0")):
                pathlib.Path(marker).write_text("paused", encoding="utf-8")
                time.sleep(float(os.environ.get("NNB_PAUSE_SECONDS", "4")))
        return self.net(x)  # [B, num_classes]
