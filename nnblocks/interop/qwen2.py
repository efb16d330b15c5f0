"""Qwen2 (Yang et al. 2024) <-> `transformer_lm`: Llama's mapping with query/key/value biases
and none on the output projection (``gqa`` with ``bias=True, out_bias=False``).

With ``use_sliding_window``, the layers transformers marks ``"sliding_attention"`` in
``layer_types`` get the `local` attention through ``layer_overrides``.
"""

from __future__ import annotations

from typing import Any

from nnblocks.interop._weights import Config
from nnblocks.interop.llama import llama_like, llama_spec

__all__ = ["QWEN2"]


def _spec(cfg: Config, variant: str) -> dict[str, Any]:
    spec = llama_spec(cfg, {"bias": True, "out_bias": False})
    layers = spec["layers"]
    if cfg.get("use_sliding_window", False):
        window = cfg.require("sliding_window")
        types = cfg.get("layer_types") or [
            "sliding_attention" if i >= cfg.get("max_window_layers", layers) else "full_attention"
            for i in range(layers)
        ]
        local = {**spec["self_attention"], "name": "local", "window": window}
        sliding = [str(i) for i, t in enumerate(types) if t == "sliding_attention"]
        if sliding:
            spec["layer_overrides"] = {f"decoder.{','.join(sliding)}": {"self_attention": local}}
    return spec


def _windows(model: Any, config: dict[str, Any]) -> None:
    windows = [getattr(layer.self_attention, "window", None) for layer in model.decoder.layers]
    sliding = [i for i, w in enumerate(windows) if w is not None]
    if sliding:
        config.update(use_sliding_window=True, sliding_window=windows[sliding[0]],
                      max_window_layers=sliding[0])  # fmt: skip


QWEN2 = llama_like(
    "qwen2",
    "Qwen2Config",
    "Qwen2ForCausalLM",
    spec=_spec,
    biases=(True, False),
    config_extra=_windows,
)
