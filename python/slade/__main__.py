"""`python -m slade ...` is the same as the `slade` console script."""
from slade.cli.main import main

raise SystemExit(main())
