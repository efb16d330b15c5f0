"""The decoding step's short path through `KeyValueAttention` (``_step_in_place``).

Decoding calls attention once per layer and token with one query, no mask and a cache of
buffers allocated ahead; that case skips the general call path. These tests hold it to
the general path bit for bit, and check that every other case still takes the general one.
"""

import pytest
import torch

import nnblocks
from nnblocks.errors import ShapeError
from nnblocks.parts.attention._base import KeyValueAttention

D, H = 32, 4
POSITIONS = [None, "rotary", "alibi"]
# Relative parts that adjust by an int start (`adjust_cached_from`) take the short path;
# ALiBi builds a bias over every key and keeps the general one.
SHORT_POSITIONS = {None, "rotary"}
SHORT = ["mha", "gqa", "mqa"]  # parts that use the base's plain softmax attention


def make(name, position=None, **options):
    spec = {"name": name, **options}
    if position is not None:
        spec["position"] = position
    return nnblocks.build(spec, "attention", dim=D, heads=H).eval()


def decode(part, x, *, general):
    """Feed ``x`` [B, T, D] one position at a time under inference mode; outputs joined,
    and how many calls took the short path."""
    taken = []
    original = KeyValueAttention._step_in_place

    def spy(self, *args):
        taken.append(1)
        return original(self, *args)

    cache, outs = {}, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KeyValueAttention, "_step_in_place", spy)
        if general:
            patch.setattr(KeyValueAttention, "_steps_in_place", lambda *a: False)
        with torch.inference_mode():
            for t in range(x.shape[1]):
                out, cache = part(x[:, t : t + 1], causal=True, cache=cache)
                outs.append(out)
    return torch.cat(outs, dim=1), len(taken), cache


@pytest.mark.parametrize("name", SHORT)
@pytest.mark.parametrize("position", POSITIONS)
def test_short_path_gives_the_general_paths_bits(name, position):
    torch.manual_seed(0)
    part = make(name, position)
    x = torch.randn(3, 9, D)
    short, taken, cache = decode(part, x, general=False)
    general, not_taken, _ = decode(part, x, general=True)
    # The first step fills the cache, the second allocates buffers, the others are short.
    assert taken == (9 - 2 if position in SHORT_POSITIONS else 0)
    assert not_taken == 0
    assert torch.equal(short, general)
    assert cache["offset"] == 9 and cache["filled"] == 9


@pytest.mark.parametrize("position", POSITIONS)
def test_short_path_matches_one_full_causal_pass(position):
    torch.manual_seed(1)
    part = make("gqa", position, kv_heads=2)
    x = torch.randn(2, 7, D)
    short, taken, _ = decode(part, x, general=False)
    with torch.inference_mode():
        full = part(x, causal=True)
    assert taken == (7 - 2 if position in SHORT_POSITIONS else 0)
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-6)


def test_cases_that_keep_the_general_path():
    torch.manual_seed(2)
    part = make("gqa", "rotary")
    x = torch.randn(2, 4, D)
    with torch.no_grad():  # (not inference mode: the grad-enabled call reuses the cache)
        _, cache = part(x, causal=True, cache={})
        _, cache = part(x[:, :1], causal=True, cache=cache)  # now buffers allocated ahead
    assert "filled" in cache
    step = x[:, :1]
    keys = torch.ones(2, cache["offset"] + 1, dtype=torch.bool)
    calls = {
        "grad enabled": lambda: part(step, causal=True, cache=dict(cache)),
        "a mask": lambda: part(step, mask=keys, causal=True, cache=dict(cache)),
        "weights asked": lambda: part(step, causal=True, cache=dict(cache), need_weights=True),
        "two queries": lambda: part(x[:, :2], causal=True, cache=dict(cache)),
    }
    for why, call in calls.items():
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(KeyValueAttention, "_step_in_place", _never(why))
            if why == "grad enabled":
                call()
            else:
                with torch.no_grad():
                    call()


@pytest.mark.parametrize("name, options", [("local", {"window": 3}), ("additive", {})])
def test_parts_with_their_own_attend_keep_the_general_path(name, options):
    part = nnblocks.build({"name": name, **options}, "attention", dim=D, heads=H).eval()
    x = torch.randn(2, 6, D)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(KeyValueAttention, "_step_in_place", _never(name))
        with torch.inference_mode():
            cache = {}
            for t in range(6):
                _, cache = part(x[:, t : t + 1], causal=True, cache=cache)


def test_short_path_still_refuses_a_cache_of_another_batch():
    part = make("mha")
    with torch.inference_mode():
        _, cache = part(torch.randn(2, 3, D), causal=True, cache={})
        _, cache = part(torch.randn(2, 1, D), causal=True, cache=cache)
        with pytest.raises(ShapeError, match="cache does not fit"):
            part(torch.randn(3, 1, D), causal=True, cache=cache)


def _never(why):
    def fail(*args, **kwargs):
        raise AssertionError(f"the short path was taken with {why}")

    return fail
