"""Sampler guarantees: m per class, every class every epoch, determinism per (seed, epoch), joint batches."""
from collections import Counter

import numpy as np
import pytest

from slade.data.samplers import JointBatchSampler, MPerClassBatchSampler, RandomBatchSampler

LABELS = np.repeat(np.arange(11), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 30])  # 11 classes, uneven, one singleton


@pytest.mark.parametrize("visits", [1, 3])
def test_m_per_class_structure_and_coverage(visits):
    sampler = MPerClassBatchSampler(LABELS, m=4, batch_size=12, seed=0, visits_per_class=visits)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-11 * visits // 3)
    seen = Counter()
    for batch in batches:
        assert len(batch) == 12
        per_class = Counter(LABELS[batch].tolist())
        assert len(per_class) == 3 and set(per_class.values()) == {4}
        seen.update(per_class.keys())
    assert set(seen) == set(range(11))  # every class visited in the epoch
    assert all(seen[c] >= visits for c in range(11))


def test_m_per_class_items_distinct_within_a_visit_and_cycled():
    sampler = MPerClassBatchSampler(LABELS, m=4, batch_size=8, seed=1, visits_per_class=2)
    by_class = {}
    for batch in sampler:
        for start in range(0, len(batch), 4):
            group = batch[start:start + 4]
            c = int(LABELS[group[0]])
            if len(np.flatnonzero(LABELS == c)) >= 4:
                assert len(set(group)) == 4  # no repeats inside a visit when the class has m items
            by_class.setdefault(c, []).extend(group)
    assert set(by_class[7]) == set(np.flatnonzero(LABELS == 7))  # 8 items, 2 visits x 4: all used


def test_m_per_class_is_deterministic_per_epoch():
    a = MPerClassBatchSampler(LABELS, 4, 12, seed=5)
    b = MPerClassBatchSampler(LABELS, 4, 12, seed=5)
    first = list(a)
    assert first == list(b) == list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(MPerClassBatchSampler(LABELS, 4, 12, seed=6)) != first


def test_m_per_class_rejects_bad_arguments():
    with pytest.raises(ValueError, match="multiple of m"):
        MPerClassBatchSampler(LABELS, m=4, batch_size=10)
    with pytest.raises(ValueError, match="classes per batch"):
        MPerClassBatchSampler(LABELS, m=2, batch_size=40)
    with pytest.raises(ValueError, match="non-negative"):
        MPerClassBatchSampler(np.array([0, -1, 1]), m=1, batch_size=2)
    with pytest.raises(ValueError, match="visits_per_class"):
        MPerClassBatchSampler(LABELS, m=4, batch_size=8, visits_per_class=0)


def test_random_batches_partition_an_epoch():
    sampler = RandomBatchSampler(10, 3, seed=0)
    batches = list(sampler)
    assert len(batches) == 3 and all(len(b) == 3 for b in batches)
    assert len(set(sum(batches, []))) == 9
    with pytest.raises(ValueError, match="batch_size"):
        RandomBatchSampler(2, 3)


def test_joint_sampler_labeled_then_unlabeled():
    labeled = MPerClassBatchSampler(LABELS, m=4, batch_size=32, seed=0)  # 8 classes per batch
    pseudo = np.repeat(np.arange(9), 5)  # unlabeled data with 9 pseudo classes: 8 clusters x 4 per batch
    unlabeled = MPerClassBatchSampler(pseudo, m=4, batch_size=32, seed=0)
    joint = JointBatchSampler(labeled, unlabeled, unlabeled_offset=len(LABELS))
    batches = list(joint)
    assert len(batches) == len(labeled) == 2  # the epoch follows the labeled sampler
    for batch in batches:
        assert len(batch) == 64
        assert all(i < len(LABELS) for i in batch[:32])
        u = np.array(batch[32:]) - len(LABELS)
        assert ((0 <= u) & (u < len(pseudo))).all()
        assert set(Counter(pseudo[u].tolist()).values()) == {4}
    joint.set_epoch(1)
    assert list(joint) != batches
    joint.set_epoch(0)
    assert list(joint) == batches


def test_joint_sampler_cycles_a_short_unlabeled_stream():
    labeled = MPerClassBatchSampler(LABELS, m=1, batch_size=2, seed=0)  # 6 steps
    unlabeled = RandomBatchSampler(4, 2, seed=0)  # 2 batches per pass
    batches = list(JointBatchSampler(labeled, unlabeled, unlabeled_offset=100))
    assert len(batches) == 6
    assert all(len(b) == 4 and min(b[2:]) >= 100 for b in batches)
