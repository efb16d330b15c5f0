"""``from_torch``: PyTorch's own transformer modules as nnblocks parts and models.

``torch.nn.MultiheadAttention`` becomes the attention part `mha`; a
``TransformerEncoderLayer`` or ``TransformerDecoderLayer`` the block part `transformer`
(post-norm unless ``norm_first``); a ``TransformerEncoder`` the model `encoder_stack`; an
``nn.Transformer`` the model `encoder_decoder`. Each is built through the registry from a
plain spec (so it saves, loads and swaps like any other part), then given the torch
module's weights; outputs are equal up to float rounding.

Two conventions differ from torch's and are not converted silently:

- nnblocks is batch-first: a module built with ``batch_first=False`` takes ``[T, B, D]``
  in torch and ``[B, T, D]`` here.
- Masks: torch's boolean masks say True = blocked (and additive float masks use -inf);
  nnblocks says True = may attend. :func:`convert_masks` turns torch's ``attn_mask`` and
  ``key_padding_mask`` into one nnblocks mask.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.errors import NNBlocksError, ShapeError, SpecError
from nnblocks.interop import torch_stacks  # noqa: F401  (registers the stack models)
from nnblocks.registry import build

__all__ = ["convert_masks", "from_torch"]


def _unsupported(module: nn.Module, option: str, value: Any, supported: str) -> NNBlocksError:
    return SpecError(
        f"{type(module).__name__}.{option}={value!r:.80} is not supported by from_torch; "
        f"supported: {supported}."
    )


# -- attention -------------------------------------------------------------------------


def _attention_spec(mha: nn.MultiheadAttention) -> dict[str, Any]:
    if not mha._qkv_same_embed_dim:
        raise _unsupported(
            mha, "kdim/vdim", (mha.kdim, mha.vdim), f"kdim == vdim == embed_dim ({mha.embed_dim})"
        )
    if mha.bias_k is not None:
        raise _unsupported(mha, "add_bias_kv", True, "add_bias_kv=False")
    if mha.add_zero_attn:
        raise _unsupported(mha, "add_zero_attn", True, "add_zero_attn=False")
    bias = mha.in_proj_bias is not None
    if bias != (mha.out_proj.bias is not None):
        raise _unsupported(mha, "bias", "on the input projection only", "bias=True or False")
    return {"name": "mha", "dropout": float(mha.dropout), "bias": bias}


def _attention_state(mha: nn.MultiheadAttention, prefix: str) -> dict[str, torch.Tensor]:
    q, k, v = mha.in_proj_weight.detach().chunk(3)  # [3D, D] -> three [D, D]
    state = {f"{prefix}q_proj.weight": q, f"{prefix}k_proj.weight": k, f"{prefix}v_proj.weight": v}
    state[f"{prefix}out_proj.weight"] = mha.out_proj.weight.detach()
    if mha.in_proj_bias is not None:
        qb, kb, vb = mha.in_proj_bias.detach().chunk(3)
        state.update({f"{prefix}q_proj.bias": qb, f"{prefix}k_proj.bias": kb})
        state.update({f"{prefix}v_proj.bias": vb, f"{prefix}out_proj.bias": mha.out_proj.bias})
    return state


# -- layers ------------------------------------------------------------------------------

_ACTIVATIONS: dict[Callable[..., Any], str] = {F.relu: "relu", F.gelu: "gelu"}


def _activation(layer: Any) -> Any:
    act = layer.activation
    if not isinstance(act, nn.Module) and act in _ACTIVATIONS:
        return _ACTIVATIONS[act]
    if type(act) is nn.ReLU:
        return "relu"
    if type(act) is nn.GELU:
        return "gelu" if act.approximate == "none" else {"name": "gelu", "approximate": "tanh"}
    raise _unsupported(layer, "activation", act, "'relu', 'gelu', nn.ReLU(), nn.GELU()")


def _norm_spec(norm: nn.Module, where: nn.Module, option: str) -> dict[str, Any]:
    if type(norm) is not nn.LayerNorm or len(norm.normalized_shape) != 1:
        raise _unsupported(where, option, norm, "nn.LayerNorm over the last axis")
    return {
        "name": "layer",
        "eps": float(norm.eps),
        "bias": norm.bias is not None,
        "elementwise_affine": norm.weight is not None,
    }


def _layer_spec(layer: Any, *, cross: bool) -> dict[str, Any]:
    p = float(layer.dropout.p)
    for name in ("dropout1", "dropout2", *(("dropout3",) if cross else ())):
        if float(getattr(layer, name).p) != p:
            raise _unsupported(layer, f"{name}.p", getattr(layer, name).p, f"equal dropouts ({p})")
    bias = layer.linear1.bias is not None
    spec: dict[str, Any] = {
        "name": "transformer",
        "attention": _attention_spec(layer.self_attn),
        "feedforward": {
            "name": "mlp",
            "hidden": layer.linear1.out_features,
            "activation": _activation(layer),
            "dropout": p,
            "bias": bias,
        },
        "norm": _norm_spec(layer.norm1, layer, "norm1"),
        "norm_placement": "pre" if layer.norm_first else "post",
        "dropout": p,
    }
    if cross:
        spec["cross_attention"] = _attention_spec(layer.multihead_attn)
    return spec


def _layer_state(layer: Any, prefix: str, *, cross: bool) -> dict[str, torch.Tensor]:
    state = _attention_state(layer.self_attn, f"{prefix}self_attention.")
    norms = ["self_attention_norm", "feedforward_norm"]
    if cross:
        state.update(_attention_state(layer.multihead_attn, f"{prefix}cross_attention."))
        norms.insert(1, "cross_attention_norm")
    for i, slot in enumerate(norms, start=1):
        for key, t in getattr(layer, f"norm{i}").state_dict().items():
            state[f"{prefix}{slot}.{key}"] = t
    for theirs, ours in (("linear1", "up"), ("linear2", "down")):
        for key, t in getattr(layer, theirs).state_dict().items():
            state[f"{prefix}feedforward.{ours}.{key}"] = t
    return state


def _same_layers(layers: Any, owner: nn.Module, *, cross: bool) -> dict[str, Any]:
    specs = [_layer_spec(layer, cross=cross) for layer in layers]
    if any(s != specs[0] for s in specs):
        raise _unsupported(owner, "layers", "layers of different configurations", "equal layers")
    return specs[0]


def _stack_norm(norm: nn.Module | None, owner: nn.Module, option: str) -> Any:
    return None if norm is None else _norm_spec(norm, owner, option)


def _stack_state(
    layers: Any, norm: nn.Module | None, prefix: str, *, cross: bool
) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(layers):
        state.update(_layer_state(layer, f"{prefix}layers.{i}.", cross=cross))
    if norm is not None:
        state.update({f"{prefix}final_norm.{k}": t for k, t in norm.state_dict().items()})
    return state


# -- entry point -------------------------------------------------------------------------


def _convert(module: Any) -> tuple[dict[str, Any], str, dict[str, Any], dict[str, Any]]:
    """(spec, kind, build defaults, state dict in nnblocks names) for a torch module."""
    if isinstance(module, nn.MultiheadAttention):
        defaults = {"dim": module.embed_dim, "heads": module.num_heads}
        return _attention_spec(module), "attention", defaults, _attention_state(module, "")
    if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        cross = isinstance(module, nn.TransformerDecoderLayer)
        attn = module.self_attn
        defaults = {"dim": attn.embed_dim, "heads": attn.num_heads}
        return (
            _layer_spec(module, cross=cross),
            "block",
            defaults,
            _layer_state(module, "", cross=cross),
        )
    if isinstance(module, nn.TransformerEncoder):
        attn = module.layers[0].self_attn
        spec = {
            "name": "encoder_stack",
            "dim": attn.embed_dim,
            "heads": attn.num_heads,
            "layers": len(module.layers),
            "block": _same_layers(module.layers, module, cross=False),
            "final_norm": _stack_norm(module.norm, module, "norm"),
        }
        return spec, "model", {}, _stack_state(module.layers, module.norm, "", cross=False)
    if isinstance(module, nn.Transformer):
        enc, dec = module.encoder, module.decoder
        if not isinstance(enc, nn.TransformerEncoder) or not isinstance(dec, nn.TransformerDecoder):
            raise _unsupported(module, "custom_encoder/custom_decoder", "given", "None")
        spec = {
            "name": "encoder_decoder",
            "dim": module.d_model,
            "heads": module.nhead,
            "encoder_layers": len(enc.layers),
            "decoder_layers": len(dec.layers),
            "encoder_block": _same_layers(enc.layers, enc, cross=False),
            "decoder_block": _same_layers(dec.layers, dec, cross=True),
            "encoder_norm": _stack_norm(enc.norm, enc, "norm"),
            "decoder_norm": _stack_norm(dec.norm, dec, "norm"),
        }
        state = _stack_state(enc.layers, enc.norm, "encoder.", cross=False)
        state.update(_stack_state(dec.layers, dec.norm, "decoder.", cross=True))
        return spec, "model", {}, state
    raise SpecError(
        f"from_torch does not convert {type(module).__name__}; supported: MultiheadAttention, "
        "TransformerEncoderLayer, TransformerEncoder, TransformerDecoderLayer, Transformer."
    )


def from_torch(module: nn.Module) -> nn.Module:
    """Convert a torch transformer module into an nnblocks part or model with its weights.

    Args:
        module: a ``torch.nn.MultiheadAttention`` (-> attention `mha`),
            ``TransformerEncoderLayer`` / ``TransformerDecoderLayer`` (-> block
            `transformer`), ``TransformerEncoder`` (-> model `encoder_stack`) or
            ``Transformer`` (-> model `encoder_decoder`).

    Returns:
        The nnblocks module, built by ``nnblocks.build`` (``nnblocks.spec_of`` gives its
        spec), in the train/eval mode, dtype and device of ``module``. It is batch-first,
        and its masks say True = may attend (see :func:`convert_masks`).

    Raises:
        SpecError: an unsupported module or option (``kdim != vdim``, ``add_bias_kv``,
            a custom activation callable, a norm other than ``nn.LayerNorm``, layers of
            different configurations), naming the option and what is supported.

    Example:
        >>> import torch, nnblocks
        >>> layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True).eval()
        >>> block = nnblocks.interop.from_torch(layer)
        >>> x = torch.randn(2, 5, 16)
        >>> torch.allclose(block(x), layer(x), atol=1e-5)
        True
    """
    spec, kind, defaults, state = _convert(module)
    built = build(spec, kind, **defaults)
    param = next(module.parameters(), None)
    if param is not None:
        built.to(device=param.device, dtype=param.dtype)
    missing, unexpected = built.load_state_dict(state, strict=False)
    if missing or unexpected:  # a mapping gap is a bug here, never a silent random weight
        raise SpecError(
            f"from_torch({type(module).__name__}): weights left unmapped: missing {missing}, "
            f"left over {unexpected}."
        )
    return built.train(module.training)


def convert_masks(
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    *,
    heads: int | None = None,
) -> torch.Tensor | None:
    """torch's ``attn_mask`` and ``key_padding_mask`` as one nnblocks mask (True = may attend).

    Args:
        attn_mask: ``[Tq, Tk]`` or ``[B * heads, Tq, Tk]``; bool (True = blocked) or
            float (0 = attend, -inf = blocked; other values are a bias, not a mask).
        key_padding_mask: ``[B, Tk]``, bool True = padding (or float, as above).
        heads: needed for a 3-D ``attn_mask`` (torch stacks batch and heads).

    Returns:
        None when both are None; else a bool mask broadcastable to ``[B, H, Tq, Tk]``.

    Raises:
        ShapeError: a float mask with values other than 0 and -inf, a 3-D ``attn_mask``
            without ``heads``, or ranks torch does not accept.
    """
    allowed = None
    if attn_mask is not None:
        ok = _allowed(attn_mask, "attn_mask")
        if ok.dim() == 2:  # [Tq, Tk]
            allowed = ok[None, None]
        elif ok.dim() == 3 and heads:
            allowed = ok.reshape(-1, heads, *ok.shape[1:])  # [B, H, Tq, Tk]
        else:
            raise ShapeError(
                "attn_mask: expected [Tq, Tk], or [B * heads, Tq, Tk] with heads given. "
                f"Received: shape {tuple(attn_mask.shape)}, heads={heads}"
            )
    if key_padding_mask is not None:
        ok = _allowed(key_padding_mask, "key_padding_mask")
        if ok.dim() != 2:
            raise ShapeError(
                f"key_padding_mask: expected [B, Tk]. Received: shape {tuple(ok.shape)}"
            )
        keys = ok[:, None, None, :]  # [B, 1, 1, Tk]
        allowed = keys if allowed is None else allowed & keys
    return allowed


def _allowed(mask: torch.Tensor, name: str) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return ~mask
    if mask.is_floating_point():
        blocked = torch.isneginf(mask)
        if not bool(((mask == 0) | blocked).all()):
            raise ShapeError(
                f"{name}: a float mask converts only when it holds 0 (attend) and -inf "
                "(blocked); other values are an additive bias, which an nnblocks mask cannot "
                "hold."
            )
        return ~blocked
    raise ShapeError(f"{name}: expected a bool or float mask. Received: dtype {mask.dtype}")
