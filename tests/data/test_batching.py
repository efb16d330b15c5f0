"""Padding with masks (True = may attend) and length-bucketed batches."""

import pytest
import torch

from nnblocks.data import TensorData
from nnblocks.data.batching import (
    LengthBucketSampler,
    collate_padded,
    pad_sequences,
    padding_mask,
    sequence_lengths,
)
from nnblocks.errors import DataError


def test_pad_sequences_right_and_left():
    tokens, mask = pad_sequences([[5, 6, 7], [8], []], pad_id=0)
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    tokens, mask = pad_sequences(
        [torch.tensor([5, 6]), torch.tensor([8])], pad_id=9, length=3, side="left"
    )
    assert tokens.tolist() == [[9, 5, 6], [9, 9, 8]]
    assert mask.tolist() == [[False, True, True], [False, False, True]]


def test_pad_sequences_rejects_too_long_rows():
    with pytest.raises(DataError, match="longer than the padded length 2"):
        pad_sequences([[1, 2, 3]], length=2)


def test_mask_follows_the_mask_contract():
    tokens, mask = pad_sequences([[4, 5], [6]], pad_id=0)
    assert mask.dtype == torch.bool and mask.shape == tokens.shape  # [B, T] per key
    assert torch.equal(padding_mask(tokens, 0), mask)  # True = a real token (may attend)


def test_sequence_lengths():
    tokens = torch.tensor([[3, 4, 0], [5, 0, 0], [6, 7, 8]])
    assert sequence_lengths(tokens, 0).tolist() == [2, 1, 3]


def test_collate_padded():
    batch = collate_padded(0)(
        [(torch.tensor([1, 2]), torch.tensor(0)), (torch.tensor([3]), torch.tensor(1))]
    )
    assert batch[0].tolist() == [[1, 2], [3, 0]] and batch[1].tolist() == [0, 1]


def test_bucket_sampler_covers_every_index_once_and_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 50, (1000,), generator=g)
    sampler = LengthBucketSampler(lengths, batch_size=32, pool_batches=10, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = torch.cat(batches).sort().values
    assert torch.equal(seen, torch.arange(1000))
    padded_bucketed = sum(len(b) * int(lengths[b].max()) for b in batches)
    order = torch.randperm(1000, generator=g).split(32)
    padded_random = sum(len(b) * int(lengths[b].max()) for b in order)
    assert padded_bucketed < 0.75 * padded_random


def test_bucket_sampler_is_seeded_and_changes_per_epoch():
    lengths = torch.arange(100) % 17
    a = [b.tolist() for b in LengthBucketSampler(lengths, 8, seed=3)]
    b = [b.tolist() for b in LengthBucketSampler(lengths, 8, seed=3)]
    assert a == b
    sampler = LengthBucketSampler(lengths, 8, seed=3)
    first, second = [x.tolist() for x in sampler], [x.tolist() for x in sampler]
    assert first != second


def test_bucket_sampler_drop_last_and_bad_sizes():
    assert all(len(b) == 8 for b in LengthBucketSampler(torch.ones(20), 8, drop_last=True))
    with pytest.raises(DataError, match="batch_size"):
        LengthBucketSampler(torch.ones(3), 0)


def test_bucket_sampler_with_tensor_data_trims_batches():
    tokens, _ = pad_sequences([[1] * n for n in (2, 9, 3, 8)], pad_id=0)
    data = TensorData(tokens, torch.zeros(4), trim={0: 0})
    sampler = LengthBucketSampler(sequence_lengths(tokens), batch_size=2, shuffle=False)
    widths = sorted(data[idx][0].shape[1] for idx in sampler)
    assert widths == [3, 9]  # short rows together, long rows together
