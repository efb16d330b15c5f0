"""Model `transformer` (being written)."""
