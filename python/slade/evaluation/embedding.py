"""Embeds an ImageSet with a model (eval mode, no gradients), skipping unreadable images."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from slade.data.imageset import ImageSet
from slade.data.torch_dataset import ImageDataset, SkipLog, collate_skipping_unreadable
from slade.runtime.context import RunContext


@torch.no_grad()
def embed(model, images: ImageSet, transform, ctx: RunContext, batch_size: int = 256,
          skip_log: SkipLog | None = None):
    """(embeddings [N', d] float32 on CPU, labels [N'], indices [N'] into `images`) of the N' readable images,
    decoded by ctx.workers loader processes."""
    loader = DataLoader(ImageDataset(images, transform), batch_size=batch_size, shuffle=False,
                        num_workers=ctx.workers, collate_fn=collate_skipping_unreadable)
    was_training = model.training
    model.eval()
    embeddings, labels, indices = [], [], []
    for batch in tqdm(loader, desc=f"embedding {images.name}", leave=False, disable=not ctx.progress):
        if skip_log is not None:
            skip_log.add(batch["skipped"])
        if not len(batch["labels"]):
            continue
        with ctx.autocast():
            embeddings.append(model(batch["images"].to(ctx.device)).float().cpu())
        labels.append(batch["labels"])
        indices.append(batch["indices"])
    model.train(was_training)
    if not embeddings:
        raise RuntimeError(f"no readable image in {images.name!r} ({len(images)} listed)")
    return torch.cat(embeddings), torch.cat(labels), torch.cat(indices)
