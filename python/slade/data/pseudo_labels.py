"""Pseudo labels of the unlabeled set (the pseudo-label stage writes them, the student trains on them) and their
file, <stage dir>/pseudo_labels.pt."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slade.runtime import checkpoint

FILE = "pseudo_labels.pt"


@dataclass
class PseudoLabels:
    labels: np.ndarray  # [N'] cluster id of each readable unlabeled image
    indices: np.ndarray  # [N'] their positions in the unlabeled ImageSet
    quality: dict = field(default_factory=dict)

    def state(self) -> dict:
        return {"labels": torch.from_numpy(self.labels), "indices": torch.from_numpy(self.indices),
                "quality": self.quality}

    @classmethod
    def from_state(cls, state: dict) -> "PseudoLabels":
        return cls(state["labels"].numpy(), state["indices"].numpy(), state["quality"])


def save_pseudo_labels(pseudo: PseudoLabels, out: Path) -> None:
    checkpoint.save_atomic({"format": checkpoint.FORMAT, **pseudo.state()}, Path(out) / FILE)


def load_pseudo_labels(out: Path) -> PseudoLabels:
    state = checkpoint.load(Path(out) / FILE, "pseudo-label file",
                            keys=("format", "labels", "indices", "quality"))
    return PseudoLabels.from_state(state)
