"""`nnblocks parts KIND`: the kind's contract, then its parts; undocumented parts say so."""

from torch import nn

import nnblocks
from nnblocks import registry
from nnblocks.cli import main


def test_parts_kind_prints_the_contract(capsys):
    assert main(["parts", "norm"]) == 0
    out = capsys.readouterr().out
    assert "contract of `norm`" in out and "channels_first" in out
    assert registry.contract_of("norm").startswith("Contract and built-in parts")


def test_a_part_without_a_docstring_is_listed_as_undocumented(capsys):
    @nnblocks.register("activation", "test_undocumented")
    class Undocumented(nn.Module):
        def forward(self, x):
            return x

    try:
        assert registry.get_entry("activation", "test_undocumented").summary == ""
        assert main(["parts", "activation", "--pattern", "test_undoc*"]) == 0
        out = capsys.readouterr().out
        assert "undocumented" in out and "Base class for all neural network" not in out
    finally:
        registry.unregister("activation", "test_undocumented")
