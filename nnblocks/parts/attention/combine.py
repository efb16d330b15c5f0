"""Attention combinators: `parallel` and `sequential` (being written)."""
