"""The examples in the Transformer family's docstrings run as written."""

import doctest
import importlib

import pytest
import torch

import nnblocks

MODULES = [
    "nnblocks.models.transformer_lm",
    "nnblocks.models.transformer_seq2seq",
    "nnblocks.models.transformer_classifier",
    "nnblocks.parts.head",
    "nnblocks.generate",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"nnblocks": nnblocks, "torch": torch})
    assert result.attempted > 0 and result.failed == 0


def test_the_family_documents_every_model():
    doc = importlib.import_module("nnblocks.models.transformer").__doc__
    for model in ("transformer_lm", "transformer_seq2seq", "transformer_classifier"):
        assert model in doc and model in nnblocks.list_parts("model")
    assert "layer_overrides" in doc
