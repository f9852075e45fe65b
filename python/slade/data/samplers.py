"""Batch samplers. Both are deterministic functions of (seed, epoch): call set_epoch(e) before each epoch, so a
resumed run draws the same batches as an uninterrupted one."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class MPerClassBatchSampler(Sampler[list[int]]):
    """Batches of `batch_size // m` classes x m items each. Unlike PML's MPerClassSampler, every class is visited
    `visits_per_class` times per epoch; a class's items are cycled without replacement across its visits (with
    replacement only when it has fewer than m). The last batch is filled up with other classes at random."""

    def __init__(self, labels, m: int, batch_size: int, seed: int = 0, visits_per_class: int = 1):
        labels = np.asarray(labels, dtype=np.int64)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        if (labels < 0).any():
            raise ValueError("labels must be non-negative (unlabeled items cannot be sampled per class)")
        if m < 1 or batch_size < 1 or batch_size % m:
            raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of m ({m})")
        if visits_per_class < 1:
            raise ValueError(f"visits_per_class must be >= 1, got {visits_per_class}")
        self.classes, inverse = np.unique(labels, return_inverse=True)
        self.classes_per_batch = batch_size // m
        if len(self.classes) < self.classes_per_batch:
            raise ValueError(f"batch_size // m = {self.classes_per_batch} classes per batch, but labels hold only "
                             f"{len(self.classes)} classes")
        self.members = [np.flatnonzero(inverse == c) for c in range(len(self.classes))]
        self.m, self.batch_size, self.seed, self.visits = m, batch_size, seed, visits_per_class
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.classes) * self.visits // self.classes_per_batch)

    def _draws(self, rng, members: np.ndarray) -> list[np.ndarray]:
        """m distinct items for each of the class's visits, using every item before any repeats."""
        if len(members) < self.m:
            return [rng.choice(members, self.m, replace=True) for _ in range(self.visits)]
        draws, pool = [], np.empty(0, dtype=members.dtype)
        for _ in range(self.visits):
            if len(pool) < self.m:  # leftovers first, then a fresh shuffle of the others: no repeat in a visit
                pool = np.concatenate([pool, rng.permutation(np.setdiff1d(members, pool))])
            draws.append(pool[: self.m])
            pool = pool[self.m:]
        return draws

    def _visit_order(self, rng) -> list[int]:
        """`visits` shuffles of the classes, one after another, each reordered at its start so that the batch
        straddling two shuffles holds no class twice."""
        order: list[int] = []
        for _ in range(self.visits):
            perm = [int(c) for c in rng.permutation(len(self.classes))]
            tail = set(order[len(order) - len(order) % self.classes_per_batch:])
            if tail:
                head = [c for c in perm if c not in tail][: self.classes_per_batch - len(tail)]
                perm = head + [c for c in perm if c not in head]
            order += perm
        return order

    def batches(self, key: tuple[int, ...]) -> Iterator[list[int]]:
        """One epoch of batches for the random-stream key (seed is prepended)."""
        rng = np.random.default_rng([self.seed, *key])
        draws = [self._draws(rng, members) for members in self.members]
        visits = self._visit_order(rng)
        for start in range(0, len(visits), self.classes_per_batch):
            chosen = [int(c) for c in visits[start:start + self.classes_per_batch]]
            fillers = []
            if len(chosen) < self.classes_per_batch:
                others = np.setdiff1d(np.arange(len(self.classes)), chosen)
                fillers = [int(c) for c in rng.choice(others, self.classes_per_batch - len(chosen), replace=False)]
            batch = [int(i) for c in chosen for i in draws[c].pop()]
            for c in fillers:
                members = self.members[c]
                batch += [int(i) for i in rng.choice(members, self.m, replace=len(members) < self.m)]
            yield batch

    def __iter__(self) -> Iterator[list[int]]:
        return self.batches((self.epoch,))


class RandomBatchSampler(Sampler[list[int]]):
    """Shuffled full batches over n items (the incomplete last batch is dropped), for data without labels."""

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be between 1 and the {n} items, got {batch_size}")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch_size

    def batches(self, key: tuple[int, ...]) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, *key]).permutation(self.n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield [int(i) for i in order[start:start + self.batch_size]]

    def __iter__(self) -> Iterator[list[int]]:
        return self.batches((self.epoch,))


class JointBatchSampler(Sampler[list[int]]):
    """Per step, one labeled batch then one unlabeled batch, concatenated as indices into a dataset that holds the
    labeled items first and the unlabeled items from `unlabeled_offset` on (docs/method.md: 32 + 32). The epoch follows
    the labeled sampler; the unlabeled one restarts (new random stream) whenever it runs out."""

    def __init__(self, labeled, unlabeled, unlabeled_offset: int):
        if unlabeled_offset < 0:
            raise ValueError(f"unlabeled_offset must be >= 0, got {unlabeled_offset}")
        if len(unlabeled) == 0:
            raise ValueError("the unlabeled sampler yields no batches")
        self.labeled, self.unlabeled, self.offset = labeled, unlabeled, unlabeled_offset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.labeled.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.labeled)

    def _unlabeled_stream(self) -> Iterator[list[int]]:
        cycle = 0
        while True:
            yield from self.unlabeled.batches((self.epoch, cycle))
            cycle += 1

    def __iter__(self) -> Iterator[list[int]]:
        stream = self._unlabeled_stream()
        for labeled_batch in self.labeled:
            yield labeled_batch + [self.offset + i for i in next(stream)]
