"""`python -m slade ...` is the same as the `slade` console script."""
from .cli import main

raise SystemExit(main())
