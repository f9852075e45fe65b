"""Offline data sets (glyph benchmark, Fashion-MNIST, readers for the paper's benchmarks), loaders and samplers."""
from .imageset import ImageSet
from .benchmark import build_benchmark
from .roles import Benchmark

__all__ = ["ImageSet", "Benchmark", "build_benchmark"]
