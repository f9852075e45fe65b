"""Embeds an ImageSet with a model (eval mode, no gradients), skipping unreadable images."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from slade.data.imageset import ImageSet
from slade.data.torch_dataset import ImageDataset, SkipLog, collate_skipping_unreadable
from slade.runtime.context import RunContext


@torch.no_grad()
def embed(model, images: ImageSet, transform, ctx: RunContext, batch_size: int = 256,
          skip_log: SkipLog | None = None):
    """(embeddings [N', d] float32 on CPU, labels [N'], indices [N'] into `images`) of the N' readable images,
    decoded by ctx.workers loader processes. Under torchrun each rank embeds its contiguous shard and every rank
    gets all of it, in order."""
    dataset = ImageDataset(images, transform)
    if ctx.ranks.active:
        dataset = Subset(dataset, ctx.ranks.shard(range(len(images))))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=ctx.workers,
                        collate_fn=collate_skipping_unreadable)
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
    if ctx.ranks.active:  # a shard may hold no readable image: it contributes empty rows

        def gather(parts, empty):
            return [ctx.ranks.gather((torch.cat(parts) if parts else empty).to(ctx.device)).cpu()]

        embeddings = gather(embeddings, torch.zeros(0, model.head.out_features))
        labels, indices = (gather(x, torch.zeros(0, dtype=torch.int64)) for x in (labels, indices))
        if skip_log is not None:
            ctx.ranks.merge_skips(skip_log)
    if not embeddings or not len(embeddings[0]):
        raise RuntimeError(f"no readable image in {images.name!r} ({len(images)} listed)")
    return torch.cat(embeddings), torch.cat(labels), torch.cat(indices)
