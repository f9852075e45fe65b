"""The `slade` command line: one module per subcommand (run, train-teacher, evaluate, info)."""
from slade.cli.main import main

__all__ = ["main"]
