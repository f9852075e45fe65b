"""Offline data sets (glyph benchmark, Fashion-MNIST, readers for the paper's benchmarks), loaders and samplers."""
from slade.data.imageset import ImageSet
from slade.data.benchmark import Benchmark, build_benchmark

__all__ = ["ImageSet", "Benchmark", "build_benchmark"]
