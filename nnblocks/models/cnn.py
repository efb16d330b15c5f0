"""Model `cnn` (being written)."""
