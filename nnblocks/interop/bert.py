"""BERT (Devlin et al. 2019) <-> `transformer_classifier`.

Token, token-type and learned position embeddings summed and normalised (the embedding
part's ``type_vocab_size`` and the model's ``embedding_norm``), post-norm blocks, then by
variant:

- ``BertModel``: ``pool="first"`` and BERT's pooler as the head (``linear`` with ``tanh``),
  so the model returns ``pooler_output`` and ``hidden_states()`` ``last_hidden_state``.
- ``BertForSequenceClassification``: pooler plus classifier, the ``mlp`` head.
- ``BertForMaskedLM``: ``pool="none"``, the ``mlp`` head with GELU and LayerNorm, tied to
  the token embedding.
"""

from __future__ import annotations

from typing import Any

from nnblocks.interop._arch import Architecture
from nnblocks.interop._weights import Config, Rule, copy
from nnblocks.registry import spec_of

__all__ = ["BERT"]

_ACTIVATIONS: dict[str, Any] = {
    "gelu": "gelu",
    "gelu_new": {"name": "gelu", "approximate": "tanh"},
    "relu": "relu",
    "silu": "silu",
    "tanh": "tanh",
}


def _head(cfg: Config, variant: str, dim: int, act: Any, eps: float) -> tuple[Any, int, str]:
    """(head spec, outputs, pooling) of a variant."""
    if variant == "mlm":
        head = {
            "name": "mlp",
            "hidden": dim,
            "activation": act,
            "norm": {"name": "layer", "eps": eps},
        }
        return head, cfg.require("vocab_size"), "none"
    if variant == "classify":
        labels = cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 2
        dropout = cfg.get("classifier_dropout", cfg.get("hidden_dropout_prob", 0.0))
        head = {"name": "mlp", "hidden": dim, "activation": "tanh", "dropout": float(dropout)}
        return head, labels, "first"
    return {"name": "linear", "activation": "tanh"}, dim, "first"


def _spec(cfg: Config, variant: str) -> dict[str, Any]:
    cfg.only("position_embedding_type", ["absolute"], default="absolute")
    cfg.only("is_decoder", [False], default=False)
    cfg.only("add_cross_attention", [False], default=False)
    act = cfg.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise cfg.refuse("hidden_act", act, _ACTIVATIONS)
    dim, eps = cfg.require("hidden_size"), float(cfg.get("layer_norm_eps", 1e-12))
    head, outputs, pool = _head(cfg, variant, dim, _ACTIVATIONS[act], eps)
    return {
        "name": "transformer_classifier",
        "vocab_size": cfg.require("vocab_size"),
        "num_classes": outputs,
        "dim": dim,
        "heads": cfg.require("num_attention_heads"),
        "layers": cfg.require("num_hidden_layers"),
        "max_len": cfg.get("max_position_embeddings", 512),
        "embedding": {"name": "token", "type_vocab_size": cfg.get("type_vocab_size", 2)},
        "position": "learned",
        "embedding_norm": {"name": "layer", "eps": eps},
        "self_attention": {
            "name": "mha",
            "dropout": float(cfg.get("attention_probs_dropout_prob", 0.0)),
        },
        "feedforward": {
            "name": "mlp",
            "hidden": cfg.require("intermediate_size"),
            "activation": _ACTIVATIONS[act],
        },
        "norm": {"name": "layer", "eps": eps},
        "norm_placement": "post",
        "final_norm": False,
        "dropout": float(cfg.get("hidden_dropout_prob", 0.0)),
        "head": head,
        "pool": pool,
        "tie_embeddings": variant == "mlm" and bool(cfg.get("tie_word_embeddings", True)),
        "pad_id": cfg.get("pad_token_id"),
    }


def _layer_rules(i: int, p: str) -> list[Rule]:
    h, n = f"{p}encoder.layer.{i}.", f"encoder.layers.{i}."
    pairs = [
        ("self_attention.q_proj", "attention.self.query"),
        ("self_attention.k_proj", "attention.self.key"),
        ("self_attention.v_proj", "attention.self.value"),
        ("self_attention.out_proj", "attention.output.dense"),
        ("self_attention_norm", "attention.output.LayerNorm"),
        ("feedforward.up", "intermediate.dense"),
        ("feedforward.down", "output.dense"),
        ("feedforward_norm", "output.LayerNorm"),
    ]
    return [
        copy(f"{n}{ours}.{k}", f"{h}{theirs}.{k}")
        for ours, theirs in pairs
        for k in ("weight", "bias")
    ]


def _rules(cfg: Config, variant: str, prefix: str) -> tuple[list[Rule], Any]:
    p, e = prefix, f"{prefix}embeddings."
    rules = [
        copy("embedding.weight", f"{e}word_embeddings.weight"),
        copy("embedding.type_weight", f"{e}token_type_embeddings.weight"),
        copy("position.weight", f"{e}position_embeddings.weight"),
        copy("embedding_norm.weight", f"{e}LayerNorm.weight"),
        copy("embedding_norm.bias", f"{e}LayerNorm.bias"),
    ]
    for i in range(cfg.require("num_hidden_layers")):
        rules += _layer_rules(i, p)
    pooler = [(f"{p}pooler.dense.weight", "weight"), (f"{p}pooler.dense.bias", "bias")]
    if variant == "base":
        rules += [copy(f"head.{k}", name) for name, k in pooler]
    elif variant == "classify":
        rules += [copy(f"head.hidden.{k}", name) for name, k in pooler]
        rules += [copy(f"head.proj.{k}", f"classifier.{k}") for k in ("weight", "bias")]
    else:
        t = "cls.predictions."
        rules += [copy(f"head.hidden.{k}", f"{t}transform.dense.{k}") for k in ("weight", "bias")]
        rules += [copy(f"head.norm.{k}", f"{t}transform.LayerNorm.{k}") for k in ("weight", "bias")]
        rules.append(copy("head.proj.bias", f"{t}bias"))
    tied = variant == "mlm" and bool(cfg.get("tie_word_embeddings", True))
    if variant == "mlm" and not tied:
        rules.append(copy("head.proj.weight", "cls.predictions.decoder.weight"))

    def optional(name: str) -> bool:
        # the position/type id buffers; the decoder's copies of the tied weight and bias
        tied_copies = ("cls.predictions.decoder.bias",) + (
            ("cls.predictions.decoder.weight",) if tied else ()
        )
        return name.endswith(("embeddings.position_ids", "embeddings.token_type_ids")) or (
            name in tied_copies
        )

    return rules, optional


def _to_config(model: Any, variant: str) -> dict[str, Any]:
    layer = model.encoder.layers[0]
    act = spec_of(layer.feedforward.activation)
    act = act if act.get("approximate", "none") != "none" else act["name"]
    classes = {"base": "BertModel", "classify": "BertForSequenceClassification",
               "mlm": "BertForMaskedLM"}  # fmt: skip
    config = {
        "architectures": [classes[variant]],
        "model_type": "bert",
        "vocab_size": model.vocab_size,
        "hidden_size": model.dim,
        "num_attention_heads": layer.self_attention.heads,
        "num_hidden_layers": len(model.encoder.layers),
        "intermediate_size": layer.feedforward.hidden,
        "hidden_act": next((k for k, v in _ACTIVATIONS.items() if v == act), str(act)),
        "max_position_embeddings": model.max_len,
        "type_vocab_size": getattr(model.embedding, "type_vocab_size", 0),
        "layer_norm_eps": layer.self_attention_norm.eps,
        "hidden_dropout_prob": spec_of(layer.dropout)["p"],
        "attention_probs_dropout_prob": layer.self_attention.dropout,
        "pad_token_id": model.pad_id,
        "tie_word_embeddings": bool(model.tied_parameters) or variant != "mlm",
    }
    if variant == "classify":
        config["num_labels"] = model.num_classes
        config["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_classes)}
        config["classifier_dropout"] = spec_of(model.head).get("dropout", 0.0)
    return config


_AUTO = {"base": "AutoModel", "classify": "AutoModelForSequenceClassification",
         "mlm": "AutoModelForMaskedLM"}  # fmt: skip

BERT = Architecture(
    model_type="bert",
    config_class="BertConfig",
    base_prefix="bert.",
    variants={
        "BertModel": "base",
        "BertForMaskedLM": "mlm",
        "BertForSequenceClassification": "classify",
    },
    spec=_spec,
    rules=_rules,
    to_config=_to_config,
    auto_class="AutoModelForMaskedLM",
)
