"""Saving and loading without pickle: safetensors + JSON + SHA-256, written atomically.

``save``/``load`` handle whole models; the building blocks serve other writers (the
Learner's checkpoints): atomic writes, strictly validated safetensors files, manifests.
"""

from nnblocks.io.atomic import (
    atomic_files,
    atomic_folder,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    recover_folder,
)
from nnblocks.io.manifest import (
    MANIFEST_NAME,
    dump_manifest,
    make_manifest,
    verify_manifest,
    write_manifest,
)
from nnblocks.io.model_card import CARD_NAME, model_card
from nnblocks.io.model_io import (
    DATA_NAME,
    TOKENIZER_CONFIG_NAME,
    TOKENIZER_NAME,
    WEIGHTS_NAME,
    load,
    model_files,
    save,
)
from nnblocks.io.pickle_policy import read_pickle_weights
from nnblocks.io.safetensors_check import MAX_HEADER_BYTES, check_file
from nnblocks.io.safetensors_io import (
    describe_tensors,
    read_metadata,
    read_tensors,
    serialize_tensors,
    write_tensors,
)
from nnblocks.io.spec_file import CONFIG_NAME, SPEC_NAME, is_nnblocks_config
from nnblocks.io.weights import check_weights, load_weights

__all__ = [
    "save",
    "load",
    "model_files",
    "model_card",
    "check_weights",
    "load_weights",
    "is_nnblocks_config",
    "describe_tensors",
    "atomic_files",
    "atomic_folder",
    "recover_folder",
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
    "CONFIG_NAME",
    "CARD_NAME",
    "DATA_NAME",
    "TOKENIZER_NAME",
    "TOKENIZER_CONFIG_NAME",
    "WEIGHTS_NAME",
]
