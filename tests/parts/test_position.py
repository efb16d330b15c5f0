"""Position parts: absolute (added to embeddings) and relative (handed to attention)."""

import math

import pytest
import torch

import nnblocks
from nnblocks.errors import ShapeError, SpecError
from nnblocks.parts.position import alibi_slopes

ABSOLUTE = ["none", "sinusoidal", "learned"]
RELATIVE = ["rotary", "alibi"]


def build(name, **options):
    return nnblocks.build({"name": name, **options}, "position")


def test_every_part_says_whether_it_is_relative():
    for name in ABSOLUTE + RELATIVE:
        assert nnblocks.get_part("position", name).relative is (name in RELATIVE)


@pytest.mark.parametrize("name", ABSOLUTE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_absolute_parts_keep_shape_and_dtype(name, dtype):
    part = build(name, dim=8, max_len=16).to(dtype)
    x = torch.randn(2, 5, 8, dtype=dtype)
    out = part(x, offset=3)
    assert out.shape == x.shape and out.dtype == dtype


def test_none_adds_nothing():
    x = torch.randn(2, 5, 8)
    assert build("none", dim=8)(x, offset=4) is x


def test_sinusoidal_matches_vaswani():
    dim = 10
    part = build("sinusoidal", dim=dim, max_len=64)
    out = part(torch.zeros(1, 64, dim))[0]
    for pos in (0, 1, 7, 63):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert out[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert out[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_odd_width_and_offset():
    part = build("sinusoidal", dim=7, max_len=32)
    x = torch.randn(2, 10, 7)
    whole = part(torch.zeros(1, 32, 7))
    assert whole[0, 5, 6].item() == pytest.approx(math.sin(5 / 10000 ** (6 / 7)), abs=1e-6)
    torch.testing.assert_close(part(x[:, 4:], offset=4), x[:, 4:] + whole[:, 4:10])


def test_sinusoidal_table_is_not_saved():
    assert build("sinusoidal", dim=8, max_len=16).state_dict() == {}


def test_learned_positions_are_parameters_used_by_offset():
    part = build("learned", dim=8, max_len=16)
    assert part.weight.shape == (16, 8) and part.weight.requires_grad
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(part(x, offset=5), x + part.weight[5:8])
    part(x, offset=13).sum().backward()
    assert part.weight.grad[13:].abs().sum() > 0 and part.weight.grad[:13].abs().sum() == 0


@pytest.mark.parametrize("name", ["sinusoidal", "learned"])
def test_too_long_inputs_name_the_part_and_max_len(name):
    part = build(name, dim=8, max_len=8)
    part(torch.randn(1, 8, 8))  # exactly max_len fits
    with pytest.raises(ShapeError, match=f"`{name}`.*max_len=8"):
        part(torch.randn(1, 9, 8))
    with pytest.raises(ShapeError, match=f"`{name}`.*max_len=8"):
        part(torch.randn(1, 2, 8), offset=7)
    with pytest.raises(ShapeError, match=f"`{name}`.*`x`"):
        part(torch.randn(1, 2, 9))


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"name": "rotary", "dim": 7}, "`dim`.*even"),
        ({"name": "sinusoidal", "dim": 8, "max_len": 0}, "`max_len`"),
        ({"name": "learned", "dim": -1}, "`dim`"),
        ({"name": "alibi", "heads": 0}, "`heads`"),
    ],
)
def test_bad_options_raise_spec_errors(spec, match):
    with pytest.raises(SpecError, match=match):
        nnblocks.build(spec, "position")


# -- rotary ---------------------------------------------------------------------------------


def rotate(part, x, start):
    positions = torch.arange(start, start + x.shape[2])
    q, _, bias = part.adjust(x, x, positions, positions)
    assert bias is None
    return q


def test_rotary_scores_depend_only_on_the_distance():
    part = build("rotary", dim=16, heads=2)
    q, k = torch.randn(1, 2, 6, 16), torch.randn(1, 2, 6, 16)
    scores = rotate(part, q, 0) @ rotate(part, k, 0).transpose(-2, -1)  # [1, 2, 6, 6]
    for shift in (1, 17, 1000):
        shifted = rotate(part, q, shift) @ rotate(part, k, shift).transpose(-2, -1)
        torch.testing.assert_close(shifted, scores, atol=1e-4, rtol=1e-4)
    plain = q @ k.transpose(-2, -1)
    assert not torch.allclose(scores, plain, atol=1e-3)  # the rotation does change scores
    diagonal = torch.eye(6, dtype=torch.bool)  # distance 0: no change at all
    torch.testing.assert_close(scores[..., diagonal], plain[..., diagonal], atol=1e-5, rtol=1e-5)


def test_rotary_keeps_norms_dtype_and_rotates_at_base_frequency():
    part = build("rotary", dim=4)
    x = torch.randn(1, 1, 3, 4, dtype=torch.float64)
    out = rotate(part, x, 0)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    # pair (x[0], x[2]) turns by angle p * 1, pair (x[1], x[3]) by p * 10000^(-1/2).
    p, rate = 2, 10000**-0.5
    c, s = math.cos(p * rate), math.sin(p * rate)
    assert out[0, 0, 2, 1].item() == pytest.approx(
        x[0, 0, 2, 1].item() * c - x[0, 0, 2, 3].item() * s
    )
    assert (
        build("rotary", dim=4)
        .to(torch.bfloat16)
        .adjust(x.bfloat16(), x.bfloat16(), torch.arange(3), torch.arange(3))[0]
        .dtype
        == torch.bfloat16
    )


def test_rotary_adjust_cached_rotates_only_the_new_keys():
    part = build("rotary", dim=8)
    q, k = torch.randn(2, 4, 1, 8), torch.randn(2, 2, 5, 8)
    k_pos = torch.arange(10, 15)
    _, all_keys, _ = part.adjust(q, k, torch.tensor([14]), k_pos)
    _, new_keys, _ = part.adjust_cached(q, k[:, :, 3:], torch.tensor([14]), k_pos)
    torch.testing.assert_close(new_keys, all_keys[:, :, 3:])


# -- ALiBi ----------------------------------------------------------------------------------


def test_alibi_slopes_follow_the_paper():
    # Press et al. 2022, section 3: 8 heads -> 1/2, 1/4, ..., 1/256.
    assert alibi_slopes(8) == pytest.approx([2.0**-i for i in range(1, 9)])
    # 16 heads: the geometric sequence starting at and with ratio 2^-0.5.
    assert alibi_slopes(16) == pytest.approx([2.0 ** (-0.5 * i) for i in range(1, 17)])
    # Not a power of two: the 4-head slopes, then every other slope of 8 heads.
    assert alibi_slopes(6) == pytest.approx([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3])
    assert len(alibi_slopes(12)) == 12 and len(set(alibi_slopes(12))) == 12


def test_alibi_bias_is_minus_slope_times_distance():
    part = build("alibi", heads=8)
    q, k = torch.randn(1, 8, 3, 4), torch.randn(1, 8, 5, 4)
    q_pos, k_pos = torch.arange(2, 5), torch.arange(5)
    q_out, k_out, bias = part.adjust(q, k, q_pos, k_pos)
    assert q_out is q and k_out is k
    assert bias.shape == (1, 8, 3, 5) and bias.dtype == q.dtype
    for h, slope in enumerate(alibi_slopes(8)):
        for i in range(3):
            for j in range(5):
                assert bias[0, h, i, j].item() == pytest.approx(-slope * abs(i + 2 - j))
    _, _, cached = part.adjust_cached(q, k[:, :, 4:], q_pos, k_pos)
    torch.testing.assert_close(cached, bias)


def test_alibi_bias_follows_the_query_dtype_and_checks_heads():
    part = build("alibi", heads=4)
    q = torch.randn(1, 4, 2, 8, dtype=torch.bfloat16)
    assert part.adjust(q, q, torch.arange(2), torch.arange(2))[2].dtype == torch.bfloat16
    with pytest.raises(ShapeError, match="`alibi`.*heads=4"):
        part.adjust(torch.randn(1, 2, 2, 8), q, torch.arange(2), torch.arange(2))
    free = build("alibi")  # heads read from q
    assert free.adjust(q, q, torch.arange(2), torch.arange(2))[2].shape == (1, 4, 2, 2)


@pytest.mark.parametrize("name", RELATIVE)
def test_relative_parts_add_nothing_to_embeddings(name):
    part = build(name, dim=8, heads=2)
    x = torch.randn(2, 3, 8)
    assert part(x, offset=2) is x


@pytest.mark.parametrize("name", RELATIVE)
def test_attention_builds_relative_parts_with_head_sizes(name):
    attn = nnblocks.build({"name": "mha", "position": name}, "attention", dim=32, heads=4)
    spec = nnblocks.spec_of(attn.position)
    assert spec["name"] == name and spec.get("dim", 8) == 8 and spec.get("heads", 4) == 4
    assert nnblocks.spec_of(attn)["position"] == name  # the attention's spec stays plain data
