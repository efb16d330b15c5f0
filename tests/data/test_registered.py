"""Datasets, transforms and tokenizers as registered parts; the one-line loader."""

import subprocess
import sys

import pytest

import nnblocks
from nnblocks.data import DataBundle, load
from nnblocks.errors import RegistryError, SpecError


def test_load_is_build_of_a_dataset_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("NNBLOCKS_CACHE", str(tmp_path))
    opts = {"lang": "de", "train_size": 50, "valid_size": 5, "test_size": 5, "long_size": 0}
    a = load("numbers", **opts)
    b = nnblocks.build({"name": "numbers", **opts}, "dataset")
    assert isinstance(a, DataBundle) and a.sizes() == b.sizes()
    assert nnblocks.spec_of(a)["lang"] == "de"  # the bundle remembers how it was made


def test_unknown_dataset_and_option():
    with pytest.raises(RegistryError, match="unknown dataset part `digit`.*Did you mean `digits`"):
        load("digit")
    with pytest.raises(SpecError, match="unknown argument `flaten`.*did you mean `flatten`"):
        load("digits", flaten=True)


@pytest.mark.slow
def test_import_stays_light():
    code = (
        "import sys, nnblocks, nnblocks.data; nnblocks.list_parts('dataset');"
        "heavy = [m for m in ('pandas', 'sklearn', 'tokenizers', 'num2words', 'babel', 'PIL', 'matplotlib')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
