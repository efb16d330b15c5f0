"""Sources: turn data you have into a ``DataBundle`` (splits + task).

=====================  ==========================================  ====================
source                 function                                    task
=====================  ==========================================  ====================
tensors / numpy        ``from_tensors(x, y)`` / ``from_numpy``      classification, regression, multilabel
pandas / CSV           ``from_dataframe(df, target)`` / ``from_csv``  classification, regression, multilabel
image folders          ``from_image_folder(root)``                 classification
text files             ``from_text_files(paths)`` / ``from_documents``  language modelling
labelled texts         ``from_texts(texts, labels)``               sequence classification
parallel text          ``from_parallel_text(src, tgt)`` / ``from_pairs``  seq2seq
labelled text file     ``from_text_table(path)`` (CSV/TSV/JSONL)   sequence classification
tensor files           ``from_tensor_file(path)`` (safetensors/.npy)  as ``from_tensors``
token corpus folder    ``from_token_corpus(path)`` (memory-mapped)  language modelling
=====================  ==========================================  ====================
"""

from nnblocks.data.sources.arrays import from_numpy, from_tensor_file, from_tensors
from nnblocks.data.sources.corpus import from_token_corpus
from nnblocks.data.sources.images import from_image_folder
from nnblocks.data.sources.parallel import from_pairs, from_parallel_text
from nnblocks.data.sources.tabular import from_csv, from_dataframe
from nnblocks.data.sources.text import (
    from_documents,
    from_text_files,
    from_text_table,
    from_texts,
)

__all__ = [
    "from_tensors",
    "from_numpy",
    "from_dataframe",
    "from_csv",
    "from_image_folder",
    "from_documents",
    "from_text_files",
    "from_texts",
    "from_pairs",
    "from_parallel_text",
    "from_text_table",
    "from_tensor_file",
    "from_token_corpus",
]
