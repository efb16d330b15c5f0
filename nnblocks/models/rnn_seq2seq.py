"""Model `rnn_seq2seq` (being written)."""
