"""Suite-wide fixtures. `device` runs a test once per device, so an op's checks are written once and the CUDA
kernels meet the same assertions as the CPU ones; the CUDA case is reported as skipped where no GPU is visible."""
from __future__ import annotations

import pytest
import torch

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, NO_CUDA])]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param
