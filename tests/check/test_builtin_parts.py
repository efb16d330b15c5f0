"""Every registered part of every kind with a contract passes it: a new part is tested here
without anyone remembering to add it."""

import pytest

import nnblocks
from nnblocks.check import check_part
from nnblocks.check.contracts import CONTRACTS

PARTS = [(kind, name) for kind in CONTRACTS for name in nnblocks.list_parts(kind)]


@pytest.mark.parametrize("kind, name", PARTS, ids=[f"{k}:{n}" for k, n in PARTS])
def test_registered_part_keeps_its_contract(kind, name):
    report = check_part(kind, name)
    assert report.ok, str(report)


def test_the_registry_has_parts_to_check():
    assert ("attention", "mha") in PARTS
    assert len({kind for kind, _ in PARTS}) >= 6
