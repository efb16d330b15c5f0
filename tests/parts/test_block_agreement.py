"""The `transformer` block agrees with `torch.nn.TransformerEncoderLayer` given the same weights.

Post-norm matches ``norm_first=False`` and pre-norm ``norm_first=True``; both in eval mode
(torch's fused fast path, under no_grad) and in train mode with dropout 0 (its Python path),
without a mask, with a padding mask and causally. Torch's masks mean True = blocked, ours
True = may attend, so the test inverts them.
"""

import pytest
import torch
from torch import nn

import nnblocks

B, T, D, H, F = 3, 7, 16, 4, 32


def pair(placement):
    ours = nnblocks.build(
        {
            "name": "transformer",
            "attention": "mha",
            "feedforward": {"name": "mlp", "hidden": F, "activation": "relu"},
            "norm": "layer",
            "norm_placement": placement,
            "dropout": 0.0,
        },
        "block",
        dim=D,
        heads=H,
    )
    ref = nn.TransformerEncoderLayer(
        D,
        H,
        dim_feedforward=F,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=placement == "pre",
    )
    with torch.no_grad():
        for p in ref.parameters():  # norms start at 1 and 0: make the copy matter
            p.normal_(0.0, 0.3)
        copy_weights(ref, ours)
    return ours, ref


def copy_weights(ref, ours):
    attn = ours.self_attention
    for ours_proj, w, b in zip(
        (attn.q_proj, attn.k_proj, attn.v_proj),
        ref.self_attn.in_proj_weight.chunk(3),
        ref.self_attn.in_proj_bias.chunk(3),
    ):
        ours_proj.weight.copy_(w)
        ours_proj.bias.copy_(b)
    attn.out_proj.load_state_dict(ref.self_attn.out_proj.state_dict())
    ours.feedforward.up.load_state_dict(ref.linear1.state_dict())
    ours.feedforward.down.load_state_dict(ref.linear2.state_dict())
    ours.self_attention_norm.load_state_dict(ref.norm1.state_dict())
    ours.feedforward_norm.load_state_dict(ref.norm2.state_dict())


def inputs():
    x = torch.randn(B, T, D)
    keep = torch.ones(B, T, dtype=torch.bool)  # ours: True = may attend
    keep[0, 5:] = False
    keep[2, 3:] = False
    return x, keep


def run(ours, ref, x, masking, keep):
    if masking == "none":
        return ours(x), ref(x)
    if masking == "padding":
        return ours(x, mask=keep), ref(x, src_key_padding_mask=~keep)
    blocked = nn.Transformer.generate_square_subsequent_mask(T)  # float -inf above the diagonal
    return ours(x, causal=True), ref(x, src_mask=blocked, is_causal=True)


@pytest.mark.parametrize("placement", ["post", "pre"])
@pytest.mark.parametrize("masking", ["none", "padding", "causal"])
def test_agrees_in_train_mode_with_dropout_zero(placement, masking):
    ours, ref = pair(placement)
    ours.train()
    ref.train()
    x, keep = inputs()
    got, expected = run(ours, ref, x, masking, keep)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("placement", ["post", "pre"])
@pytest.mark.parametrize("masking", ["none", "padding", "causal"])
def test_agrees_in_eval_mode_with_torch_fast_path(placement, masking):
    ours, ref = pair(placement)
    ours.eval()
    ref.eval()
    x, keep = inputs()
    with torch.no_grad():
        got, expected = run(ours, ref, x, masking, keep)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_gradients_agree():
    ours, ref = pair("pre")
    x, keep = inputs()
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    ours(x1, mask=keep).pow(2).sum().backward()
    ref(x2, src_key_padding_mask=~keep).pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        ours.feedforward.up.weight.grad, ref.linear1.weight.grad, atol=1e-5, rtol=1e-5
    )
