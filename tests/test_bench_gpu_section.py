"""The GPU section of ``make bench`` runs end to end (on the CPU here: a smoke test of its
code; CI has no GPU) and renders its tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_gpu_section_runs_and_renders_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu
    import run_all

    doc = gpu.run(quick=True, device="cpu")
    assert doc["training"]["tokens_per_s"]["nnblocks"] > 0
    assert doc["attention_kernel"]["kernels"]  # the profiler saw an SDPA kernel
    assert doc["hybridize_auto"]["chose"] in ("eager", "compile")
    assert [r["batch"] for r in doc["decoding"]] == [1, 8]
    assert all(r["same_tokens_as_transformers"] for r in doc["decoding"])
    text = "\n".join(run_all._md_gpu(doc))
    assert "nnblocks MFU" in text and "SDPA kernels" in text and "hybridize" in text
    sys.modules.pop("gpu", None)
