"""Architectures assembled only from slots; importing this registers them (kind `model`)."""

from nnblocks.models import cnn, mlp, rnn_seq2seq, transformer  # noqa: F401
