"""Training across processes with torch.distributed, launched by torchrun (one machine or several: torchrun's
rendezvous); without torchrun's environment everything runs in one process exactly as before.

How a run is split (docs/architecture.md, "Training across processes"):
- every rank draws the same global batch (same seed) and forwards its contiguous slice of it;
- the embeddings are gathered in rank order (slade_ext.distributed.gather_global, differentiable), so every rank
  computes the loss, the miner's pairs, the feature basis's statistics and the confident pairs of the very batch a
  single process would see, and holds the same moving averages;
- after backward the parameter gradients are averaged over ranks (all_reduce), which with the differentiable
  gather gives every rank the single-process gradient: the data-parallel step of DDP, done on the optimiser's
  parameters because the stages train sub-modules (the self-supervised stage trains the backbone and a
  projection head) that a DistributedDataParallel wrapper would not see;
- batch norm computes its statistics over the global batch (GlobalBatchNorm, or torch's SyncBatchNorm on CUDA)
  when runtime.sync_batchnorm is on;
- embedding for evaluation and pseudo labels is sharded and gathered; metrics and k-means run once, on rank 0, and
  their result is broadcast; only rank 0 writes files and shows progress, the others wait at a barrier."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from slade_ext.distributed import gather_global, sum_over_ranks


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's `obj`, on every rank."""
        if not self.active:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_objects(self, obj) -> list:
        """Every rank's `obj`, in rank order."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def merge_skips(self, skip_log) -> None:
        """Every rank's unreadable images into `skip_log` (a data.torch_dataset.SkipLog): each rank met others."""
        for paths in self.all_objects(skip_log.paths()) if self.active else ():
            skip_log.add((name, path) for name, names in paths.items() for path in names)

    def gather(self, x: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
        """Every rank's rows in rank order (slade_ext.distributed.gather_global)."""
        return gather_global(x, differentiable=differentiable) if self.active else x

    def shard(self, items):
        """This rank's contiguous part of `items` (a list or an array); the parts in rank order are `items`."""
        if not self.active:
            return items
        bounds = np.linspace(0, len(items), self.world_size + 1).round().astype(int)
        return items[bounds[self.rank]:bounds[self.rank + 1]]

    def average_gradients(self, parameters) -> None:
        """Each gradient becomes its mean over ranks (the step of data-parallel training)."""
        if not self.active:
            return
        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world_size


def init_from_env() -> Ranks:
    """Joins the process group that torchrun's environment describes (NCCL on GPUs, gloo on CPUs); one process
    when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank)


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (a differentiable all_reduce of the
    sums), for CPUs, where torch's SyncBatchNorm does not run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = sum_over_ranks
        dims, c = (0, 2, 3), x.shape[1]
        # Two passes (mean, then squared deviations) for the accuracy of a one-process batch norm's variance.
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        sums = all_reduce(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:c] / n
        var = all_reduce(((x - mean.view(1, c, 1, 1)) ** 2).sum(dims)) / n
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * n / (n - 1))
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def global_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` with every BatchNorm2d computing global-batch statistics: torch's SyncBatchNorm on CUDA,
    GlobalBatchNorm elsewhere; parameters and running statistics are kept."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                          child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement.to(device))
        else:
            global_batchnorm(child, device)
    return module
