"""The paper's fold protocol: class-disjoint folds that together cover the labeled classes."""
import pytest

from slade.data.benchmark import build_benchmark
from slade.data.folds import fold_benchmarks
from helpers.configs import tiny_selftrain_config


def test_folds_are_class_disjoint_and_cover_the_labeled_classes(tmp_path):
    bench = build_benchmark(tiny_selftrain_config(tmp_path).data)
    folds = fold_benchmarks(bench, 3, seed=0)
    names = set(bench.labeled.class_names)
    held = [set(f.val.class_names) for f in folds]
    assert set().union(*held) == names and sum(map(len, held)) == len(names)
    for f, h in zip(folds, held):
        assert set(f.labeled.class_names) == names - h and f.test is bench.test and f.unlabeled is bench.unlabeled
    with pytest.raises(ValueError, match="selftrain.folds"):
        fold_benchmarks(bench, 0, seed=0)
