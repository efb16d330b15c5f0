"""The decoding benchmark explains a disagreement with transformers instead of only flagging it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nnblocks

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_differing_rows_are_named_with_both_log_probabilities(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import decode
    import run_all

    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "vocab_size": 20, "dim": 16, "heads": 2, "layers": 1}
    model = nnblocks.build(spec).eval()
    ours = nnblocks.generate.greedy(model, batch_size=3, max_new_tokens=6)  # the likeliest path
    theirs = ours.clone()
    theirs[1, 4] = (theirs[1, 4] + 1) % 20  # another token in row 1 only
    d = decode.disagreement(model, ours, theirs, prompt_len=1)
    assert d["rows"] == [1]
    expected = decode.sequence_logprob(model, theirs[1:2], 1).item()
    assert d["transformers_logprob"][0] == pytest.approx(expected)
    # Greedy is not always the likeliest sequence, so compare with what was computed.
    assert d["nnblocks_at_least_as_likely"] == (
        d["nnblocks_logprob"][0] >= d["transformers_logprob"][0] - 1e-4
    )
    row = {"decode": "beam 4", "batch": 3, "tokens": 6, "cache_speedup": 1.0,
           "tokens_per_s": {"nnblocks": 1.0, "nnblocks_uncached": 1.0, "transformers": 1.0},
           "same_tokens_uncached": True, "same_tokens_as_transformers": False,
           "differences": d}  # fmt: skip
    doc = {"config": decode.CONFIG, "parameters": 1, "transformers_skipped": None,
           "results": [row], "cache_at_length": row}  # fmt: skip
    text = "\n".join(run_all._md_decode(doc))
    assert "rows [1] differ" in text and f"{d['nnblocks_logprob'][0]:.2f}" in text
