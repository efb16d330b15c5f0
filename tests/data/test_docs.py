"""The examples in the data package's docstrings run and give what they show."""

import doctest
import importlib
import pkgutil

import pytest

import nnblocks.data

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(nnblocks.data.__path__, prefix="nnblocks.data.")
    if not m.name.endswith("registered")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.setenv("NNBLOCKS_CACHE", str(tmp_path))
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0, (
        f"{result.failed} docstring example(s) of {name} failed (run doctest for details)"
    )
