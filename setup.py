"""Builds slade_ext._C: CUDA kernels when a GPU is visible (its architecture only) or FORCE_CUDA=1, else CPU only.

Always with `pip install --no-build-isolation`: the kernels compile against the torch of the target environment.
"""
import importlib.util
import json
import os
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_build_config", ROOT / "slade_ext" / "_build_config.py")
build_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_config)

try:
    import torch
except ImportError:  # an isolated build (pyproject does not list torch), or torch not installed yet
    sys.exit("error: torch is not importable in this build environment.\n" + build_config.ISOLATED_BUILD_ADVICE)
if build_config.in_isolated_build_env(torch.__file__) and os.environ.get("SLADE_EXT_ALLOW_ISOLATED_BUILD") != "1":
    sys.exit(f"error: the build sees torch {torch.__version__} from pip's isolated build environment "
             f"({os.path.dirname(torch.__file__)}).\n" + build_config.ISOLATED_BUILD_ADVICE)
build_config.prefer_standard_cuda_home()

from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402  (after CUDA_HOME)


WITH_CUDA = build_config.want_cuda(torch)
ARCHS = build_config.cuda_arch_list(torch) if WITH_CUDA else None
_WHAT = f"CUDA kernels for {ARCHS}" if WITH_CUDA else "CPU kernels only (no GPU visible; FORCE_CUDA=1 adds CUDA)"
print(f"slade_ext: building {_WHAT}, against torch {torch.__version__}", file=sys.stderr)


class BuildExt(BuildExtension.with_options(use_ninja=True)):
    """Also writes slade_ext/_build_meta.json next to `_C` (the torch it was built against, for the loader)."""

    def run(self):
        super().run()
        meta = build_config.build_meta(torch, WITH_CUDA, ARCHS, str(ROOT), editable=bool(self.inplace))
        targets = {Path(self.build_lib) / "slade_ext"}
        if self.inplace:
            targets.add(ROOT / "slade_ext")
        for folder in targets:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / build_config.META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    def get_outputs(self):
        return super().get_outputs() + [str(Path(self.build_lib) / "slade_ext" / build_config.META_FILE)]


def extension():
    with_cuda, archs = WITH_CUDA, ARCHS
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
    package_data={"slade.presets": ["*.yaml"], "slade.data.glyphs": ["debian_fonts.txt"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExt},
)
