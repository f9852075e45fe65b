"""Subcommands of the `slade` CLI."""
