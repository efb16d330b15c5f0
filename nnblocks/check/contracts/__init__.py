"""Contracts, one module per kind: the checks that kind's written contract implies.

``CONTRACTS[kind]`` is a `Contract`; `contract_for` falls back to the generic checks for a
kind added by a plugin (``registry.add_kind``) that has no contract module here.
"""

from __future__ import annotations

from nnblocks.check.contracts import (
    activation,
    attention,
    block,
    embedding,
    feedforward,
    generic,
    norm,
    position,
    regularization,
)
from nnblocks.check.contracts.base import Check, Context, Contract, Sizes

__all__ = ["CONTRACTS", "NO_CONTRACT", "Check", "Context", "Contract", "Sizes", "contract_for"]

CONTRACTS: dict[str, Contract] = {
    c.kind: c
    for c in (
        attention.CONTRACT,
        norm.CONTRACT,
        position.CONTRACT,
        feedforward.CONTRACT,
        activation.CONTRACT,
        embedding.CONTRACT,
        regularization.CONTRACT,
        block.CONTRACT,
    )
}

# Kinds whose parts need whole-model inputs or are not modules: checked elsewhere (models
# by their own tests and the audit; data kinds by the data tests).
NO_CONTRACT = ("model", "dataset", "transform", "tokenizer")


def contract_for(kind: str) -> Contract | None:
    """The contract of ``kind``; None for kinds the kit cannot check in isolation."""
    if kind in CONTRACTS:
        return CONTRACTS[kind]
    if kind in NO_CONTRACT:
        return None
    return generic.fallback_contract(kind)
