"""Subcommands of the `nnblocks` CLI that belong to no larger package."""
