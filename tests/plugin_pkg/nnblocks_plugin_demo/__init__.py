"""A third-party part: registered by importing this module through the entry point."""

import torch
from torch import nn

import nnblocks


@nnblocks.register("activation", "plugin_square")
class Square(nn.Module):
    """x * x: a stand-in for an activation shipped by another package."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x
