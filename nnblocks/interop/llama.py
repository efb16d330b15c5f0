"""Llama (Touvron et al. 2023) <-> `transformer_lm`; Mistral and Qwen2 reuse this mapping.

Rotary positions (``rotary``, with ``linear`` or ``llama3`` frequency scaling), grouped-query
attention (``gqa``, optionally with another ``head_dim`` and biases), a SwiGLU feedforward
(``swiglu``: transformers' ``gate_proj`` and ``up_proj`` are the two halves of its fused
``up``), RMSNorm, pre-norm, and a head tied to the embedding or not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nnblocks.interop._arch import Architecture
from nnblocks.interop._weights import Config, Rule, copy
from nnblocks.registry import spec_of

__all__ = ["LLAMA", "llama_like", "llama_spec", "llama_rules", "llama_config", "rope_position"]

_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu"}
_ROPE_TYPES = ("default", "linear", "llama3")


def rope_position(cfg: Config) -> dict[str, Any]:
    """The `rotary` position spec of a config (``rope_parameters`` or the older
    ``rope_theta`` + ``rope_scaling``)."""
    params = cfg.get("rope_parameters")
    key = "rope_parameters"
    if not params:
        key = "rope_scaling"
        params = {**(cfg.get("rope_scaling") or {}), "rope_theta": cfg.get("rope_theta", 10000.0)}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in _ROPE_TYPES:
        raise Config(params, f"{cfg.class_name}.{key}", cfg.where).refuse(
            "type", kind, ("linear", "llama3")
        )
    if float(params.get("partial_rotary_factor", 1.0)) != 1.0:
        raise cfg.refuse(f"{key}.partial_rotary_factor", params["partial_rotary_factor"], [1.0])
    spec: dict[str, Any] = {"name": "rotary", "base": float(params.get("rope_theta", 10000.0))}
    if kind == "linear":
        spec["scaling"] = {"type": "linear", "factor": params.get("factor")}
    elif kind == "llama3":
        spec["scaling"] = {
            "type": "llama3",
            **{
                k: params.get(k)
                for k in (
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                )
            },
        }
    return spec


def llama_spec(cfg: Config, attention: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `transformer_lm` spec of a Llama-like config; ``attention`` adds to (or replaces
    options of) every layer's self-attention spec."""
    act = cfg.get("hidden_act", "silu")
    if act not in _ACTIVATIONS:
        raise cfg.refuse("hidden_act", act, _ACTIVATIONS)
    if cfg.get("pretraining_tp", 1) != 1:
        raise cfg.refuse("pretraining_tp", cfg.get("pretraining_tp"), [1])
    dim, heads = cfg.require("hidden_size"), cfg.require("num_attention_heads")
    head_dim = cfg.get("head_dim") or dim // heads
    bias = bool(cfg.get("attention_bias", False))
    self_attention: dict[str, Any] = {
        "name": "gqa",
        "kv_heads": cfg.get("num_key_value_heads") or heads,
        "bias": bias,
        "dropout": float(cfg.get("attention_dropout", 0.0)),
    }
    if head_dim * heads != dim:
        self_attention["head_dim"] = head_dim
    self_attention.update(attention or {})
    return {
        "name": "transformer_lm",
        "vocab_size": cfg.require("vocab_size"),
        "dim": dim,
        "heads": heads,
        "layers": cfg.require("num_hidden_layers"),
        "max_len": cfg.get("max_position_embeddings", 2048),
        "position": rope_position(cfg),
        "self_attention": self_attention,
        "feedforward": {
            "name": "swiglu",
            "hidden": cfg.require("intermediate_size"),
            "activation": _ACTIVATIONS[act],
            "bias": bool(cfg.get("mlp_bias", False)),
        },
        "norm": {"name": "rms", "eps": float(cfg.get("rms_norm_eps", 1e-6))},
        "norm_placement": "pre",
        "dropout": 0.0,
        "final_norm": True,
        "head": "linear",
        "tie_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "pad_id": cfg.get("pad_token_id"),
        "bos_id": cfg.get("bos_token_id", 1),
        "eos_id": cfg.get("eos_token_id", 2),  # Llama 3 lists several: each ends a sequence
    }


def llama_rules(
    cfg: Config, variant: str, prefix: str, *, qkv_bias: bool, out_bias: bool, mlp_bias: bool
) -> tuple[list[Rule], Any]:
    """The weight mapping of a Llama-like checkpoint."""
    p = prefix
    rules = [
        copy("embedding.weight", f"{p}embed_tokens.weight"),
        copy("decoder.final_norm.weight", f"{p}norm.weight"),
    ]
    for i in range(cfg.require("num_hidden_layers")):
        h, n = f"{p}layers.{i}.", f"decoder.layers.{i}."
        pairs = [("q_proj", "q_proj", qkv_bias), ("k_proj", "k_proj", qkv_bias),
                 ("v_proj", "v_proj", qkv_bias), ("out_proj", "o_proj", out_bias)]  # fmt: skip
        for ours, theirs, has_bias in pairs:
            rules.append(copy(f"{n}self_attention.{ours}.weight", f"{h}self_attn.{theirs}.weight"))
            if has_bias:
                rules.append(copy(f"{n}self_attention.{ours}.bias", f"{h}self_attn.{theirs}.bias"))
        for kind in ("weight", "bias") if mlp_bias else ("weight",):
            gate_up = (f"{h}mlp.gate_proj.{kind}", f"{h}mlp.up_proj.{kind}")
            rules.append(Rule(f"{n}feedforward.up.{kind}", gate_up, "cat", dim=0))
            rules.append(copy(f"{n}feedforward.down.{kind}", f"{h}mlp.down_proj.{kind}"))
        rules.append(copy(f"{n}self_attention_norm.weight", f"{h}input_layernorm.weight"))
        rules.append(copy(f"{n}feedforward_norm.weight", f"{h}post_attention_layernorm.weight"))
    tied = bool(cfg.get("tie_word_embeddings", False))
    if not tied:
        rules.append(copy("head.weight", "lm_head.weight"))

    def optional(name: str) -> bool:
        return name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight")

    return rules, optional


def llama_config(model: Any, model_type: str, architecture: str) -> dict[str, Any]:
    """The transformers config of a Llama-like `transformer_lm` (read from its parts)."""
    layer = model.decoder.layers[0]
    attention, feedforward = layer.self_attention, layer.feedforward
    position = getattr(attention, "position", None)
    rope: dict[str, Any] = {
        "rope_theta": getattr(position, "base", 10000.0),
        "rope_type": "default",
    }
    scaling = getattr(position, "scaling", None)
    if scaling:
        rope.update({k: v for k, v in scaling.items() if k != "type"}, rope_type=scaling["type"])
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": model.vocab_size,
        "hidden_size": model.dim,
        "num_attention_heads": attention.heads,
        "num_key_value_heads": attention.kv_heads,
        "head_dim": attention.head_dim,
        "num_hidden_layers": len(model.decoder.layers),
        "intermediate_size": feedforward.hidden,
        "hidden_act": spec_of(feedforward.activation)["name"],
        "max_position_embeddings": model.max_len,
        "rms_norm_eps": layer.self_attention_norm.eps,
        "rope_parameters": rope,
        "attention_dropout": attention.dropout,
        "attention_bias": attention.q_proj.bias is not None,
        "mlp_bias": feedforward.up.bias is not None,
        "tie_word_embeddings": bool(model.tied_parameters),
        "pad_token_id": model.pad_id,
        "bos_token_id": model.bos_id,
        "eos_token_id": model.eos_id,
    }


def llama_like(
    model_type: str,
    config_class: str,
    task_class: str,
    *,
    spec: Callable[[Config, str], dict[str, Any]],
    biases: tuple[bool, bool] | None = None,
    config_extra: Callable[[Any, dict[str, Any]], None] | None = None,
) -> Architecture:
    """An architecture with Llama's weight mapping and config (Mistral and Qwen2 use it).

    Args:
        model_type, config_class: as ``Architecture`` takes them (``"mistral"``,
            ``"MistralConfig"``).
        task_class: the transformers causal-LM class (``"MistralForCausalLM"``).
        spec: ``(config, variant) -> transformer_lm spec``, usually through ``llama_spec``.
        biases: the query/key/value and output-projection biases the architecture fixes
            (its MLP then has none, and its config no ``attention_bias``/``mlp_bias``
            keys); None reads them from the config, as Llama does.
        config_extra: ``(model, config)`` adds the architecture's own keys to an exported
            config (a sliding window).

    Returns:
        The ``Architecture`` for ``model_type``.
    """

    def rules(cfg: Config, variant: str, prefix: str) -> tuple[list[Rule], Any]:
        if biases is None:
            bias = bool(cfg.get("attention_bias", False))
            qkv_bias, out_bias, mlp_bias = bias, bias, bool(cfg.get("mlp_bias"))
        else:
            (qkv_bias, out_bias), mlp_bias = biases, False
        return llama_rules(
            cfg, variant, prefix, qkv_bias=qkv_bias, out_bias=out_bias, mlp_bias=mlp_bias
        )

    def to_config(model: Any, variant: str) -> dict[str, Any]:
        config = llama_config(model, model_type, task_class)
        if biases is not None:
            del config["attention_bias"], config["mlp_bias"]
        if config_extra is not None:
            config_extra(model, config)
        return config

    return Architecture(
        model_type=model_type,
        config_class=config_class,
        base_prefix="model.",
        variants={task_class: "lm"},
        spec=spec,
        rules=rules,
        to_config=to_config,
    )


def _spec(cfg: Config, variant: str) -> dict[str, Any]:
    return llama_spec(cfg)


LLAMA = llama_like("llama", "LlamaConfig", "LlamaForCausalLM", spec=_spec)
