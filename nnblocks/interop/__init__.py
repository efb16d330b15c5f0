"""Pretrained and foreign models in and out of nnblocks: ``from_torch`` (torch.nn modules).

``from_transformers`` / ``to_transformers`` (Hugging Face) live beside it in this package.
"""

from nnblocks.interop.torch_nn import convert_masks, from_torch

__all__ = ["convert_masks", "from_torch"]
