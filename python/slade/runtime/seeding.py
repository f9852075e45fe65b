"""Seeds every random generator from (seed, epoch): each epoch starts from a state that depends on nothing else,
which is what makes a resumed run equal to an uninterrupted one."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, epoch: int = 0) -> None:
    value = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)  # also seeds every CUDA device
