"""GPT-2 (Radford et al. 2019) <-> `transformer_lm`.

Learned positions, pre-norm LayerNorm blocks, multi-head attention with biases, a GELU MLP
and a head tied to the token embedding. transformers stores the projections as ``Conv1D``
(``[in, out]``, transposed against ``nn.Linear``) and fuses query, key and value into
``attn.c_attn``; the rules below split and transpose them.
"""

from __future__ import annotations

from typing import Any

from nnblocks.interop._arch import Architecture
from nnblocks.interop._weights import Config, Rule, copy
from nnblocks.registry import spec_of

__all__ = ["GPT2"]

# transformers activation names -> nnblocks activation specs
_ACTIVATIONS: dict[str, Any] = {
    "gelu_new": {"name": "gelu", "approximate": "tanh"},
    "gelu_pytorch_tanh": {"name": "gelu", "approximate": "tanh"},
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
}


def _spec(cfg: Config, variant: str) -> dict[str, Any]:
    for key, value in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
        ("reorder_and_upcast_attn", False),
        ("add_cross_attention", False),
    ):
        cfg.only(key, [value], default=value)
    activation = cfg.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise cfg.refuse("activation_function", activation, _ACTIVATIONS)
    dim, eps = cfg.require("n_embd"), cfg.get("layer_norm_epsilon", 1e-5)
    tied = bool(cfg.get("tie_word_embeddings", True)) or variant == "base"
    return {
        "name": "transformer_lm",
        "vocab_size": cfg.require("vocab_size"),
        "dim": dim,
        "heads": cfg.require("n_head"),
        "layers": cfg.require("n_layer"),
        "max_len": cfg.require("n_positions"),
        "position": "learned",
        "self_attention": {"name": "mha", "dropout": float(cfg.get("attn_pdrop", 0.0))},
        "feedforward": {
            "name": "mlp",
            "hidden": cfg.get("n_inner") or 4 * dim,
            "activation": _ACTIVATIONS[activation],
        },
        "norm": {"name": "layer", "eps": eps},
        "norm_placement": "pre",
        "dropout": float(cfg.get("resid_pdrop", 0.0)),
        "final_norm": True,
        "head": "linear",
        "tie_embeddings": tied,
        "pad_id": cfg.get("pad_token_id"),
        "bos_id": cfg.get("bos_token_id", 0),
        "eos_id": cfg.get("eos_token_id", 0),
    }


def _rules(cfg: Config, variant: str, prefix: str) -> tuple[list[Rule], Any]:
    p = prefix
    rules = [
        copy("embedding.weight", f"{p}wte.weight"),
        copy("position.weight", f"{p}wpe.weight"),
        copy("decoder.final_norm.weight", f"{p}ln_f.weight"),
        copy("decoder.final_norm.bias", f"{p}ln_f.bias"),
    ]
    for i in range(cfg.require("n_layer")):
        h, n = f"{p}h.{i}.", f"decoder.layers.{i}."
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            attn = f"{n}self_attention.{name}"
            rules.append(Rule(f"{attn}.weight", (f"{h}attn.c_attn.weight",), "chunk",
                              dim=1, index=j, parts=3, transpose=True))  # fmt: skip
            rules.append(Rule(f"{attn}.bias", (f"{h}attn.c_attn.bias",), "chunk",
                              dim=0, index=j, parts=3))  # fmt: skip
        rules += [
            copy(f"{n}self_attention.out_proj.weight", f"{h}attn.c_proj.weight", transpose=True),
            copy(f"{n}self_attention.out_proj.bias", f"{h}attn.c_proj.bias"),
            copy(f"{n}feedforward.up.weight", f"{h}mlp.c_fc.weight", transpose=True),
            copy(f"{n}feedforward.up.bias", f"{h}mlp.c_fc.bias"),
            copy(f"{n}feedforward.down.weight", f"{h}mlp.c_proj.weight", transpose=True),
            copy(f"{n}feedforward.down.bias", f"{h}mlp.c_proj.bias"),
        ]
        for ours, theirs in (("self_attention_norm", "ln_1"), ("feedforward_norm", "ln_2")):
            rules.append(copy(f"{n}{ours}.weight", f"{h}{theirs}.weight"))
            rules.append(copy(f"{n}{ours}.bias", f"{h}{theirs}.bias"))
    tied = bool(cfg.get("tie_word_embeddings", True))
    if variant == "lm" and not tied:
        rules.append(copy("head.weight", "lm_head.weight"))

    def optional(name: str) -> bool:
        # causal-mask buffers of old checkpoints; the tied head's copy of the embedding
        return name.endswith((".attn.bias", ".attn.masked_bias")) or (
            tied and name == "lm_head.weight"
        )

    return rules, optional


def _to_config(model: Any, variant: str) -> dict[str, Any]:
    layer = model.decoder.layers[0]
    activation = spec_of(layer.feedforward.activation)
    activation = (
        activation if activation.get("approximate", "none") != "none" else activation["name"]
    )
    names = [k for k, v in _ACTIVATIONS.items() if v == activation]
    return {
        "architectures": ["GPT2LMHeadModel" if variant == "lm" else "GPT2Model"],
        "model_type": "gpt2",
        "vocab_size": model.vocab_size,
        "n_embd": model.dim,
        "n_head": layer.self_attention.heads,
        "n_layer": len(model.decoder.layers),
        "n_positions": model.max_len,
        "n_inner": layer.feedforward.hidden,
        "activation_function": names[0] if names else str(activation),
        "layer_norm_epsilon": layer.self_attention_norm.eps,
        "attn_pdrop": layer.self_attention.dropout,
        "resid_pdrop": spec_of(layer.dropout)["p"],
        "embd_pdrop": spec_of(layer.dropout)["p"],
        "tie_word_embeddings": bool(model.tied_parameters),
        "pad_token_id": model.pad_id,
        "bos_token_id": model.bos_id,
        "eos_token_id": model.eos_id,
    }


GPT2 = Architecture(
    model_type="gpt2",
    config_class="GPT2Config",
    base_prefix="transformer.",
    variants={"GPT2LMHeadModel": "lm", "GPT2Model": "base"},
    spec=_spec,
    rules=_rules,
    to_config=_to_config,
)
