"""Data: sources, tasks, splits, transforms, tokenizers, batching and offline datasets.

One line loads a built-in dataset: ``nnblocks.data.load("numbers", lang="de")``, the same
as ``nnblocks.build({"name": "numbers", "lang": "de"}, "dataset")``. Every loader returns a
``DataBundle``: ``.train`` / ``.valid`` / ``.test`` (``TensorData``, the Learner's fast
path) and ``.task`` (loss, metrics, model_args, evaluate, decode_example).

The right choice is the default: statistics come from the training split only,
augmentation touches training batches only, splits are checked for leakage, and a label
that training never saw stops the load with a ``DataError``.
"""

from __future__ import annotations

from typing import Any

from nnblocks.data import sources, transforms
from nnblocks.data.batching import (
    LengthBucketSampler,
    collate_padded,
    pad_sequences,
    padding_mask,
    sequence_lengths,
)
from nnblocks.data.bundle import DataBundle, load_data_state
from nnblocks.data.losses_and_metrics import (
    MeanAbsoluteError,
    MultiLabelAccuracy,
    SequenceCrossEntropy,
    TokenAccuracy,
)
from nnblocks.data.paths import data_root
from nnblocks.data.show import show_batch
from nnblocks.data.sources import (  # noqa: F401  (public: listed by sources.__all__)
    from_csv,
    from_dataframe,
    from_documents,
    from_image_folder,
    from_numpy,
    from_pairs,
    from_parallel_text,
    from_tensor_file,
    from_tensors,
    from_text_files,
    from_text_table,
    from_texts,
    from_token_corpus,
)
from nnblocks.data.splits import (
    Splits,
    check_leakage,
    group_split,
    make_splits,
    random_split,
    split_by_column,
    split_by_indices,
    split_by_predicate,
    stratified_split,
)
from nnblocks.data.tasks import (
    ClassificationTask,
    LanguageModelTask,
    MultiLabelTask,
    RegressionTask,
    Seq2SeqTask,
    SequenceClassificationTask,
    Task,
)
from nnblocks.data.tensors import TensorData
from nnblocks.data.token_blocks import TokenBlocks
from nnblocks.data.token_file import TokenWriter, open_token_corpus, write_token_corpus
from nnblocks.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    LexiconTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from nnblocks.data.transforms import (  # noqa: F401  (public: listed by transforms.__all__)
    Affine,
    AugmentedData,
    Categorify,
    FillMissing,
    Flip,
    Noise,
    Normalize,
    RandomCrop,
    Table,
    Transform,
    fit_apply,
    transform_from_dict,
)

__all__ = [
    "load",
    "TensorData",
    "DataBundle",
    "load_data_state",
    # tasks
    "Task",
    "ClassificationTask",
    "MultiLabelTask",
    "RegressionTask",
    "Seq2SeqTask",
    "LanguageModelTask",
    "SequenceClassificationTask",
    "SequenceCrossEntropy",
    "TokenAccuracy",
    "MeanAbsoluteError",
    "MultiLabelAccuracy",
    *sources.__all__,
    "data_root",
    # corpora bigger than memory
    "TokenBlocks",
    "TokenWriter",
    "write_token_corpus",
    "open_token_corpus",
    # splits
    "Splits",
    "random_split",
    "stratified_split",
    "group_split",
    "split_by_column",
    "split_by_indices",
    "split_by_predicate",
    "make_splits",
    "check_leakage",
    *transforms.__all__,
    # tokenizers
    "Tokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "LexiconTokenizer",
    "BPETokenizer",
    "tokenizer_from_dict",
    "load_tokenizer",
    # batching
    "pad_sequences",
    "padding_mask",
    "sequence_lengths",
    "collate_padded",
    "LengthBucketSampler",
    "show_batch",
]


def load(name: str, **options: Any) -> DataBundle:
    """Load a registered dataset in one line.

    Args:
        name: the dataset part (``"digits"``, ``"wine"``, ``"diabetes"``, ``"numbers"``,
            ``"dates"``, ``"python_source"``, or a plugin's).
        **options: the dataset's options (see its docstring, or ``nnblocks parts dataset``).

    Returns:
        the dataset's DataBundle.

    Raises:
        RegistryError: an unknown dataset name (with the closest match).
        SpecError: an unknown option (with the accepted ones).
        DataError: data that cannot be loaded as asked.

    Example:
        >>> bundle = load("numbers", lang="de")  # doctest: +SKIP
    """
    from nnblocks.registry import build

    return build({"name": name, **options}, "dataset")
