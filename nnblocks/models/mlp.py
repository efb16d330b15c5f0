"""Model `mlp` (being written)."""
