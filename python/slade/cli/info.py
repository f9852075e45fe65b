"""`slade info`: which faiss is live (and whether it really reaches a GPU), and torch's devices."""
from __future__ import annotations

import json

NAME = "info"
HELP = "report the faiss build in use, whether it uses a GPU, and torch's devices"


def add_arguments(parser) -> None:
    pass


def run(args, extra) -> int:
    if extra:
        raise ValueError(f"unexpected arguments {extra}")
    import torch

    from slade.search.backend import faiss_report

    report = {"faiss": faiss_report(), "torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
              "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    print(json.dumps(report, indent=2))
    return 0
