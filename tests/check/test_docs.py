"""The examples in the check package's docstrings run and show what they claim."""

import doctest
import importlib

import pytest

MODULES = ["report", "kit", "against", "audit", "numerics"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"nnblocks.check.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0
