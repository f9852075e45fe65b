"""Checkpoints written atomically (temp file + rename in the same directory): an interrupted write never leaves a
truncated file where a good one was."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_atomic(state: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict:
    """Checkpoints hold only tensors and plain Python values, so the safe loader suffices."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def restore(state: dict, **stateful) -> None:
    """Loads state[name] into each named object (model, optimizer, scheduler, scaler...) of a resumed run."""
    for name, obj in stateful.items():
        obj.load_state_dict(state[name])
