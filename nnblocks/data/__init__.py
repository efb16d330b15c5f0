"""Data: sources, tasks, splits, transforms, tokenizers, batching and offline datasets."""

from nnblocks.data.tensors import TensorData

__all__ = ["TensorData"]
