"""Builds slade_ext._C: CUDA kernels when nvcc and a CUDA torch are present (or FORCE_CUDA=1), else CPU only."""
import importlib.util
import os
from pathlib import Path

import torch
from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_build_config", ROOT / "slade_ext" / "_build_config.py")
build_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_config)
build_config.prefer_standard_cuda_home()

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402  (after CUDA_HOME)


def extension():
    with_cuda = build_config.want_cuda(torch)
    archs = build_config.cuda_arch_list(torch) if with_cuda else None
    if with_cuda:
        # torch.utils.cpp_extension reads the list from the environment when it builds the nvcc command line.
        os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    sources = [os.path.relpath(f, ROOT) for f in build_config.source_files(ROOT / "csrc", with_cuda)]
    kwargs = dict(
        name="slade_ext._C",
        sources=sources,
        include_dirs=[str(ROOT / "csrc" / "include")] + (build_config.cuda_include_dirs() if with_cuda else []),
        extra_compile_args=build_config.compile_flags(with_cuda, archs),
        extra_link_args=build_config.LINK_FLAGS,
    )
    return CUDAExtension(**kwargs) if with_cuda else CppExtension(**kwargs)


setup(
    # slade.presets: the YAML presets of configs/ (slade.config.preset("glyphs_cpu")), shipped from that one folder.
    packages=find_packages(include=["slade_ext", "slade_ext.*"]) + find_packages("python") + ["slade.presets"],
    package_dir={"slade_ext": "slade_ext", "": "python", "slade.presets": "configs"},
    package_data={"slade.presets": ["*.yaml"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
