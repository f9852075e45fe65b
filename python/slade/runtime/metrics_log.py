"""The JSON-lines metrics log of a run: one object per epoch (and one per final evaluation)."""
from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def restart(self, rows: list[dict]) -> None:
        """Rewrites the log with the rows a checkpoint knows about (a resumed run drops rows written after it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def append(self, row: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
