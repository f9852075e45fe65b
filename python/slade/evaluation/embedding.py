"""Embeds an ImageSet with a model (eval mode, no gradients), skipping unreadable images."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from slade.data.imageset import ImageSet
from slade.data.torch_dataset import ImageDataset, SkipLog, collate_skipping_unreadable
from slade.runtime.devices import autocast


@torch.no_grad()
def embed(model, images: ImageSet, transform, device, batch_size: int = 256, workers: int = 0, amp: bool = False,
          skip_log: SkipLog | None = None, role: str = "", progress: bool = True):
    """(embeddings [N', d] float32 on CPU, labels [N'], indices [N'] into `images`) of the N' readable images."""
    loader = DataLoader(ImageDataset(images, transform), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate_skipping_unreadable)
    was_training = model.training
    model.eval()
    embeddings, labels, indices = [], [], []
    for batch in tqdm(loader, desc=f"embedding {role or images.name}", leave=False, disable=not progress):
        if skip_log is not None:
            skip_log.add(role or images.name, batch["skipped"])
        if not len(batch["labels"]):
            continue
        with autocast(device, amp):
            embeddings.append(model(batch["images"].to(device)).float().cpu())
        labels.append(batch["labels"])
        indices.append(batch["indices"])
    model.train(was_training)
    if not embeddings:
        raise RuntimeError(f"no readable image in {role or images.name!r} ({len(images)} listed)")
    return torch.cat(embeddings), torch.cat(labels), torch.cat(indices)
