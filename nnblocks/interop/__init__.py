"""Pretrained models in and out: Hugging Face folders and transformers models as nnblocks
models whose every slot is swappable (``from_transformers``), and back (``to_transformers``).

Reading a folder needs neither transformers nor any code from the folder: ``config.json``
is parsed and the safetensors weights are read directly.
"""

from nnblocks.interop.exporting import to_transformers
from nnblocks.interop.importing import from_transformers

__all__ = ["from_transformers", "to_transformers"]
