"""Seeds every random generator from (seed, epoch): each epoch starts from a state that depends on nothing else,
which is what makes a resumed run equal to an uninterrupted one. Mid-epoch checkpoints save the generators' state
and a resumed run puts it back."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, epoch: int = 0) -> None:
    value = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)  # also seeds every CUDA device


def rng_state() -> dict:
    """The global generators' state in plain values and tensors (what the safe checkpoint loader reads)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
