"""The contracts of the other kinds: correct reference parts pass, broken twins fail."""

import pytest
import reference_parts as rp
import torch
from broken_parts import PlainAttention
from torch import nn

from nnblocks.check import check_part


@pytest.mark.parametrize(
    "kind, part",
    [
        ("norm", rp.LayerNormRef),
        ("norm", rp.RMSNormRef),
        ("norm", rp.BatchNormRef),
        ("position", rp.SinusoidalRef),
        ("position", rp.RotaryRef),
        ("feedforward", rp.MLPRef),
        ("activation", rp.GeluRef),
        ("embedding", rp.EmbeddingRef),
        ("regularization", rp.DropoutRef),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_reference_parts_pass(kind, part):
    report = check_part(kind, part)
    assert report.ok, str(report)
    assert not report.warnings, str(report)


FAULTS = [
    ("norm", rp.NormOverTime, "statistics"),
    ("norm", rp.FrozenBatchNorm, "statistics"),
    ("position", rp.OffsetIgnored, "offset"),
    ("position", rp.AbsoluteBias, "shift_invariance"),
    ("position", rp.AbsoluteBias, "bias_by_distance"),
    ("feedforward", rp.MixesPositions, "position_wise"),
    ("activation", rp.SoftmaxActivation, "element_wise"),
    ("regularization", rp.NoisyInEval, "eval_identity"),
    ("regularization", rp.NoisyInEval, "determinism"),
    ("norm", rp.RMSNormInPlace, "inputs_unchanged"),
    ("feedforward", rp.ClampsInPlace, "inputs_unchanged"),
]


@pytest.mark.parametrize(
    "kind, part, check", FAULTS, ids=[f"{k}-{p.__name__}-{c}" for k, p, c in FAULTS]
)
def test_broken_parts_fail_their_check(kind, part, check):
    report = check_part(kind, part, only=[check])
    assert report[check].status == "fail", str(report)
    assert not report[check].message.startswith("crashed"), report[check].message


def test_writing_into_the_input_names_it_and_only_warns_for_activations():
    norm = check_part("norm", rp.RMSNormInPlace, only=["inputs_unchanged"])["inputs_unchanged"]
    assert "`x` (eval mode)" in norm.message and "residual" in norm.message
    relu = check_part("activation", rp.InPlaceRelu, only=["inputs_unchanged"])
    assert relu["inputs_unchanged"].status == "warn" and relu.ok, str(relu)
    assert check_part("activation", rp.GeluRef, only=["inputs_unchanged"]).ok


def test_norm_statistics_name_the_family():
    layer = check_part("norm", rp.LayerNormRef, only=["statistics"])["statistics"].message
    rms = check_part("norm", rp.RMSNormRef, only=["statistics"])["statistics"].message
    batch = check_part("norm", rp.BatchNormRef, only=["statistics"])["statistics"].message
    assert "LayerNorm" in layer and "RMSNorm" in rms and "running statistics" in batch


def test_a_norm_named_layer_must_centre():
    class LayerNorm(rp.RMSNormRef):  # the name promises centring, the code does not centre
        pass

    record = check_part("norm", LayerNorm, only=["statistics"])["statistics"]
    assert record.status == "fail" and "centre" in record.message


def test_channels_first_variant_is_checked_when_the_part_offers_it():
    class ChannelsNorm(rp.LayerNormRef):
        def __init__(self, dim, channels_first=False):
            super().__init__(dim)
            self.channels_first = channels_first

        def forward(self, x):
            if self.channels_first:
                return super().forward(x.movedim(1, -1)).movedim(-1, 1)
            return super().forward(x)

    class WrongChannels(ChannelsNorm):
        def forward(self, x):  # ignores the flag: normalises the last axis of [B, C, H, W]
            return rp.LayerNormRef.forward(self, x) if x.shape[-1] == self.weight.shape[0] else x

    assert (
        check_part("norm", ChannelsNorm, only=["channels_first"])["channels_first"].status == "pass"
    )
    assert (
        check_part("norm", rp.LayerNormRef, only=["channels_first"])["channels_first"].status
        == "skip"
    )
    assert (
        check_part("norm", WrongChannels, only=["channels_first"])["channels_first"].status
        == "fail"
    )


def test_relative_position_checks_skip_the_absolute_ones_and_vice_versa():
    rotary = check_part("position", rp.RotaryRef)
    assert rotary["offset"].status == "skip" and rotary["shift_invariance"].status == "pass"
    assert rotary["bias_by_distance"].status == "skip"  # no bias to look at
    sinus = check_part("position", rp.SinusoidalRef)
    assert sinus["shift_invariance"].status == "skip" and sinus["offset"].status == "pass"


def test_embedding_padding_row_and_weight():
    class NoPadding(rp.EmbeddingRef):
        def __init__(self, dim, vocab_size, padding_idx=None):
            super().__init__(dim, vocab_size, None)  # drops padding_idx

    assert check_part("embedding", NoPadding, only=["padding_idx"])["padding_idx"].status == "fail"

    class TensorWeight(nn.Module):
        def __init__(self, dim, vocab_size):
            super().__init__()
            self.register_buffer("weight", torch.randn(vocab_size, dim))

        def forward(self, ids):
            return self.weight[ids]

    assert check_part("embedding", TensorWeight, only=["weight"])["weight"].status == "fail"


class PreNormBlock(nn.Module):
    """A transformer layer from the reference parts: x + attn(norm(x)), x + mlp(norm(x))."""

    def __init__(self, dim, heads):
        super().__init__()
        self.self_attention = PlainAttention(dim, heads)
        self.self_attention_norm = rp.LayerNormRef(dim)
        self.feedforward = rp.MLPRef(dim)
        self.feedforward_norm = rp.LayerNormRef(dim)
        self.cross_attention = None

    def forward(self, x, mask=None, causal=False, context=None, context_mask=None, cache=None):
        h = self.self_attention(self.self_attention_norm(x), mask=mask, causal=causal, cache=cache)
        h, cache = h if cache is not None else (h, None)
        x = x + h
        x = x + self.feedforward(self.feedforward_norm(x))
        return x if cache is None else (x, cache)


class LeakyBlock(PreNormBlock):
    """Fault: a causal block whose feedforward sees a running mean over time."""

    def forward(self, x, mask=None, causal=False, context=None, context_mask=None, cache=None):
        out = super().forward(x, mask, causal, context, context_mask, cache)
        return out + 0.1 * x.mean(1, keepdim=True) if cache is None else out


def test_block_contract():
    report = check_part("block", PreNormBlock)
    assert report.ok, str(report)
    assert report["shape_cross"].status == "skip"  # no cross-attention in this block
    assert report["fully_masked_zero"].status == "skip"  # the residual passes x through
    assert report["cache_self"].status == "pass"
    assert (
        check_part("block", LeakyBlock, only=["causal_leakage"])["causal_leakage"].status == "fail"
    )


def test_a_kind_added_by_a_plugin_gets_the_generic_checks():
    from nnblocks import registry

    registry.add_kind("kit_test_kind", "test kind")
    try:
        report = check_part("kit_test_kind", rp.MLPRef)
    finally:
        registry._KINDS.pop("kit_test_kind")
        registry._PARTS.pop("kit_test_kind")
    assert report.ok, str(report)
    assert [r.name for r in report][:2] == ["shape", "dtype_float32"]
