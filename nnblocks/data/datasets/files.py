"""Your own files as registered datasets, so a recipe can name them like a built-in one.

=================  ===========================================  ==========================
name               Python function                              the file
=================  ===========================================  ==========================
``csv``            ``from_csv(path, target)``                   a CSV table
``image_folder``   ``from_image_folder(root)``                  ``root/<class>/<image>``
``text_files``     ``from_text_files(paths)``                   ``.txt`` files or a folder
``texts``          ``from_text_table(path, text=, label=)``     CSV/TSV/JSONL of labelled texts
``pairs``          ``from_parallel_text(src, tgt=None)``        TSV/CSV/JSONL of pairs, or two files
``tensors``        ``from_tensor_file(path)``                   safetensors, or ``.npy`` files
``token_corpus``   ``from_token_corpus(path)``                  a memory-mapped token corpus
``hf``             ``from_hf(path, inputs=, targets=)``         a local Hugging Face dataset
=================  ===========================================  ==========================

Each part takes exactly the options of its Python function (the options it forwards to the
function below it included, e.g. ``csv`` takes ``from_dataframe``'s ``cat_names``), so the
registry checks a recipe's keys against them and ``nnblocks parts dataset`` lists them. Its
paths are resolved by ``nnblocks.data.paths.resolve_path``: relative to the recipe's folder
and inside it, unless ``allow_outside: true``.

Example (a recipe)::

    data: {name: csv, path: data/houses.csv, target: price}
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from nnblocks.data.bundle import DataBundle
from nnblocks.data.paths import resolve_path
from nnblocks.data.sources.arrays import from_tensor_file, from_tensors
from nnblocks.data.sources.corpus import from_token_corpus
from nnblocks.data.sources.hf import from_hf
from nnblocks.data.sources.images import from_image_folder
from nnblocks.data.sources.parallel import from_pairs, from_parallel_text
from nnblocks.data.sources.tabular import from_csv, from_dataframe
from nnblocks.data.sources.text import from_documents, from_text_files, from_text_table, from_texts
from nnblocks.registry import register
from nnblocks.spec import current_path, join_path

__all__ = ["file_dataset"]

# Options a source sets itself (message names, file lists): not for the user to pass.
_INTERNAL = frozenset({"where", "info", "names"})


def file_dataset(
    name: str,
    fn: Callable[..., DataBundle],
    *,
    paths: Mapping[str, str],
    forwards_to: Callable[..., Any] | None = None,
) -> Callable[..., DataBundle]:
    """Register ``fn`` as the dataset part ``name``, its path options resolved for recipes.

    Args:
        name: the part's name.
        fn: the source function.
        paths: ``{option: "file" | "dir" | "any"}``: the options that hold paths.
        forwards_to: the function ``fn`` hands its ``**options`` to; its keyword options
            become the part's too (so the registry can check them by name).

    Returns:
        the registered part (a function with the combined signature).
    """
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    if forwards_to is not None:
        own = {p.name for p in params}
        params += [
            p.replace(kind=p.KEYWORD_ONLY)
            for p in inspect.signature(forwards_to).parameters.values()
            if p.kind is p.KEYWORD_ONLY and p.name not in own and p.name not in _INTERNAL
        ]
    params.append(inspect.Parameter("allow_outside", inspect.Parameter.KEYWORD_ONLY, default=False))
    signature = inspect.Signature(params, return_annotation=DataBundle)

    @functools.wraps(fn)
    def part(*args: Any, **kwargs: Any) -> DataBundle:
        bound = signature.bind(*args, **kwargs)
        options = dict(bound.arguments)
        allow = bool(options.pop("allow_outside", False))
        for key, expect in paths.items():
            value = options.get(key)
            if value is None or not isinstance(value, (str, os.PathLike, list, tuple)):
                continue  # not a path (e.g. a Tokenizer object given from Python)
            at = join_path(current_path(), key) or key
            if isinstance(value, (list, tuple)):
                options[key] = [
                    resolve_path(v, key=f"{at}.{i}", expect=expect, allow_outside=allow)
                    for i, v in enumerate(value)
                ]
            else:
                options[key] = resolve_path(value, key=at, expect=expect, allow_outside=allow)
        return fn(**options)

    part.__signature__ = signature  # type: ignore[attr-defined]
    part.__name__ = part.__qualname__ = name
    part.__doc__ = (fn.__doc__ or "") + _options_note(fn, forwards_to)
    return register("dataset", name)(part)


def _options_note(fn: Callable[..., Any], forwards_to: Callable[..., Any] | None) -> str:
    more = f" and the options of ``{forwards_to.__name__}``" if forwards_to is not None else ""
    return (
        f"\n    As a registered dataset: the options of ``{fn.__name__}``{more}; paths relative "
        "to the recipe's folder, which they must stay inside unless ``allow_outside: true``.\n"
    )


csv = file_dataset("csv", from_csv, paths={"path": "file"}, forwards_to=from_dataframe)
image_folder = file_dataset("image_folder", from_image_folder, paths={"root": "dir"})
text_files = file_dataset(
    "text_files", from_text_files, paths={"paths": "any"}, forwards_to=from_documents
)
texts = file_dataset("texts", from_text_table, paths={"path": "file"}, forwards_to=from_texts)
pairs = file_dataset(
    "pairs", from_parallel_text, paths={"src": "file", "tgt": "file"}, forwards_to=from_pairs
)
tensors = file_dataset(
    "tensors", from_tensor_file, paths={"path": "file", "targets": "file"}, forwards_to=from_tensors
)
token_corpus = file_dataset(
    "token_corpus", from_token_corpus, paths={"path": "dir", "tokenizer": "file"}
)
hf = file_dataset("hf", from_hf, paths={"path": "any"})
