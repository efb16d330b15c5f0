"""Pretrained and foreign models in and out of nnblocks, every slot swappable.

- ``from_transformers(model_or_folder)``: a transformers model or a Hugging Face folder as
  an nnblocks model; ``to_transformers(model, folder)``: back to the Hugging Face layout.
  Reading a folder needs neither transformers nor any code from the folder: ``config.json``
  is parsed and the safetensors weights are read directly.
- ``from_torch(module)``: ``torch.nn`` attention and Transformer modules as nnblocks parts
  (``convert_masks`` turns torch's masks, True = blocked, into nnblocks', True = may attend).
"""

from nnblocks.interop.exporting import to_transformers
from nnblocks.interop.importing import from_transformers
from nnblocks.interop.torch_nn import convert_masks, from_torch

__all__ = ["from_transformers", "to_transformers", "from_torch", "convert_masks"]
