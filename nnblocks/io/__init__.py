"""Saving and loading without pickle: safetensors + JSON + SHA-256, written atomically.

``save``/``load`` handle whole models; the building blocks serve other writers (the
Learner's checkpoints): atomic writes, strictly validated safetensors files, manifests.
"""

from nnblocks.io.atomic import (
    atomic_files,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
)
from nnblocks.io.manifest import (
    MANIFEST_NAME,
    dump_manifest,
    make_manifest,
    verify_manifest,
    write_manifest,
)
from nnblocks.io.model_io import WEIGHTS_NAME, load, save
from nnblocks.io.pickle_policy import read_pickle_weights
from nnblocks.io.safetensors_check import MAX_HEADER_BYTES, check_file
from nnblocks.io.safetensors_io import (
    read_metadata,
    read_tensors,
    serialize_tensors,
    write_tensors,
)
from nnblocks.io.spec_file import SPEC_NAME

__all__ = [
    "save",
    "load",
    "atomic_files",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_file",
    "read_tensors",
    "read_metadata",
    "write_tensors",
    "serialize_tensors",
    "read_pickle_weights",
    "write_manifest",
    "verify_manifest",
    "make_manifest",
    "dump_manifest",
    "MANIFEST_NAME",
    "MAX_HEADER_BYTES",
    "SPEC_NAME",
    "WEIGHTS_NAME",
]
